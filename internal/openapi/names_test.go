package openapi

import (
	"reflect"
	"testing"
)

type pair[K comparable, V any] struct {
	Key K `json:"key"`
	Val V `json:"val"`
}

type box[T any] struct {
	V T `json:"v"`
}

func TestComponentName(t *testing.T) {
	tests := map[string]string{
		"Instance": "Instance",
		"Page[github.com/holdfast/holdfast/internal/api.Instance]": "PageInstance",
		"Page[github.com/x/api.List[github.com/x/api.Item]]":       "PageListItem",
		"Page[[]github.com/x/api.Item]":                            "PageListItem",
		"Page[*github.com/x/api.Item]":                             "PageItem",
		"Set[map[string]int]":                                      "SetMapStringInt",
		"Pair[string,github.com/x/api.Item]":                       "PairStringItem",
		"Page[gopkg.in/yaml.v3.Node]":                              "PageNode",
		"Result[github.com/holdfast/holdfast/internal/api.Page[github.com/x/api.Instance],bool]": "ResultPageInstanceBool",
	}
	for in, want := range tests {
		if got := componentName(in); got != want {
			t.Errorf("componentName(%q) = %q, want %q", in, got, want)
		}
	}

	// The names reflect really gives generic instantiations.
	for typ, want := range map[reflect.Type]string{
		reflect.TypeFor[pair[string, box[int]]](): "pairStringBoxInt", // the base name as it is
		reflect.TypeFor[box[[]pair[int, bool]]](): "boxListPairIntBool",
	} {
		if got := componentName(typ.Name()); got != want {
			t.Errorf("componentName(%q) = %q, want %q", typ.Name(), got, want)
		}
	}
}
