package client

import (
	"context"
	"iter"
	"net/http"
	"net/url"
	"strconv"

	"github.com/holdfast/holdfast/api"
)

// ListOptions picks one page of a list. A nil *ListOptions is the first
// page of the server's default size.
type ListOptions struct {
	// Limit is the page size, 1-1000; 0 means the server's default (100).
	Limit int
	// Cursor is the Next of the previous page; "" is the first page.
	Cursor string
}

func (o *ListOptions) query() url.Values {
	q := url.Values{}
	if o == nil {
		return q
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Cursor != "" {
		q.Set("cursor", o.Cursor)
	}
	return q
}

// All iterates over every item of a list, fetching pages of limit items (0:
// the server's default) as the loop needs them. list is a list method,
// e.g. c.ListTenants, or InTenant(tenant, c.ListInstances). An error ends
// the iteration, yielded with a zero item.
//
//	for t, err := range client.All(ctx, 0, c.ListTenants) {
//		if err != nil {
//			return err
//		}
//		fmt.Println(t.Name)
//	}
func All[T any](ctx context.Context, limit int, list func(context.Context, *ListOptions) (*api.Page[T], error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		opts := &ListOptions{Limit: limit}
		for {
			p, err := list(ctx, opts)
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, it := range p.Items {
				if !yield(it, nil) {
					return
				}
			}
			if p.Next == "" || p.Next == opts.Cursor {
				return
			}
			opts = &ListOptions{Limit: limit, Cursor: p.Next}
		}
	}
}

// ListAll returns every item of a list, in the list's order, fetching
// pages of limit items (0: the server's default).
func ListAll[T any](ctx context.Context, limit int, list func(context.Context, *ListOptions) (*api.Page[T], error)) ([]T, error) {
	items := []T{}
	for it, err := range All(ctx, limit, list) {
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return items, nil
}

// InTenant binds the tenant of a tenant's list method, for All and
// ListAll:
//
//	instances, err := client.ListAll(ctx, 0, client.InTenant("acme", c.ListInstances))
func InTenant[T any](tenant string, list func(context.Context, string, *ListOptions) (*api.Page[T], error)) func(context.Context, *ListOptions) (*api.Page[T], error) {
	return func(ctx context.Context, o *ListOptions) (*api.Page[T], error) { return list(ctx, tenant, o) }
}

// listEvery fetches every page of a list the server does not page today
// (members, API keys), following Next should it start to.
func listEvery[T any](ctx context.Context, c *Client, k call) ([]T, error) {
	return ListAll(ctx, 0, func(ctx context.Context, o *ListOptions) (*api.Page[T], error) {
		var p api.Page[T]
		k := k
		k.query, k.out = o.query(), &p
		if err := c.do(ctx, k); err != nil {
			return nil, err
		}
		return &p, nil
	})
}

// page fetches one page of a list.
func page[T any](ctx context.Context, c *Client, path string, opts *ListOptions, elems ...string) (*api.Page[T], error) {
	var p api.Page[T]
	if err := c.do(ctx, call{method: http.MethodGet, path: path, elems: elems, query: opts.query(), out: &p}); err != nil {
		return nil, err
	}
	if p.Items == nil {
		p.Items = []T{}
	}
	return &p, nil
}
