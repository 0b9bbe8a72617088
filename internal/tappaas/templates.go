package tappaas

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/holdfast/holdfast/internal/spec"
)

// tmpl is what the import knows about one template beyond the spec: the
// cloud-init value of the first module using it, to spot modules that
// disagree.
type tmpl struct {
	name      string
	cloudInit bool
	from      string // file of the first module using the template
}

// imageSuffixes are stripped from image file names to name templates:
// compression first, then the disk format.
var imageSuffixes = []string{".xz", ".zst", ".gz", ".bz2", ".zip", ".tar", ".qcow2", ".img", ".raw", ".iso", ".vmdk", ".ova"}

// template turns the module's image settings (imageType, image, cloudInit,
// os) into a shared template: one per distinct (imageType, image).
func (b *builder) template() {
	if b.image == nil {
		for _, f := range []*field{b.imageType, b.cloudInit, b.os} {
			if f != nil {
				b.notMapped(f, "no image to make a template of; not mapped")
			}
		}
		return
	}
	image := b.image.val.str // a string, or the literal of a template VMID
	if b.image.val.kind != kString && b.image.val.kind != kNumber || image == "" {
		b.wrongType(b.image, "an image name or template VMID")
		return
	}
	imageType, typeDesc := "clone", `"clone"` // TAPPaaS's default
	if b.imageType != nil {
		s, _ := b.imageType.val.asString()
		imageType, typeDesc = strings.ToLower(s), b.imageType.val.describe()
	}
	switch imageType {
	case "clone", "img", "iso":
	default:
		// apt installs a package on a node: there is no VM image. (Only an
		// imageType that was given can be unknown.)
		b.notMapped(b.imageType, "imageType %s is not a VM image (clone, img or iso); no template", typeDesc)
		b.notMapped(b.image, "image of imageType %s; not mapped", typeDesc)
		for _, f := range []*field{b.cloudInit, b.os} {
			if f != nil {
				b.notMapped(f, "no template to attach it to; not mapped")
			}
		}
		return
	}

	im := b.im
	key := [2]string{imageType, image}
	t := im.templates[key]
	if t == nil {
		t = &tmpl{name: im.templateName(imageType, image)}
		st := &spec.Template{Image: image, Description: templateDescription(imageType, image)}
		st.Name = t.name
		st.SetPos(b.src.pos(b.image.off))
		im.spec.Templates[t.name] = st
		im.templates[key] = t
	}
	st := im.spec.Templates[t.name]
	b.in.Template = t.name

	// A module without cloudInit has TAPPaaS's default, true; modules that
	// share an image but disagree cannot share one template.
	ci, explicit := true, false
	if f := b.cloudInit; f != nil {
		if v, ok := f.val.asBool(); ok {
			ci, explicit = v, true
		} else {
			b.wrongType(f, "true or false")
		}
	}
	if t.from == "" {
		t.cloudInit, t.from = ci, b.src.name
	}
	switch {
	case ci != t.cloudInit:
		at := b.image
		if explicit {
			at = b.cloudInit
		}
		b.notMapped(at, "cloud-init %v conflicts with template %q (cloud-init %v, as in %s); the template keeps %v", ci, t.name, t.cloudInit, t.from, t.cloudInit)
	case explicit && st.CloudInit == nil:
		st.CloudInit = &ci
	}

	if f := b.os; f != nil {
		s, ok := f.val.asString()
		switch {
		case !ok:
			b.wrongType(f, "an OS name")
		case st.OS == "":
			st.OS = s
		case st.OS != s:
			b.notMapped(f, "os %q conflicts with template %q (os %q); the template keeps %q", s, t.name, st.OS, st.OS)
		}
	}
}

func templateDescription(imageType, image string) string {
	switch imageType {
	case "clone":
		if _, err := strconv.Atoi(image); err == nil {
			return "Clone of Proxmox template VM " + image
		}
		return "Clone of " + image
	case "iso":
		return "Installed from ISO " + image
	}
	return "Disk image " + image
}

// templateName names a template after its image, within the spec's name
// rules: "clone-8080", "img-haos-ova-17-3". Distinct images that sanitize
// alike get -2, -3, ...
func (im *importer) templateName(imageType, image string) string {
	base := image
	for trimmed := true; trimmed; {
		trimmed = false
		for _, suf := range imageSuffixes {
			if len(base) > len(suf) && strings.HasSuffix(strings.ToLower(base), suf) {
				base, trimmed = base[:len(base)-len(suf)], true
			}
		}
	}
	var sb strings.Builder
	dash := false
	for _, r := range strings.ToLower(imageType + "-" + base) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			sb.WriteRune(r)
			dash = false
		} else if !dash {
			sb.WriteByte('-')
			dash = true
		}
	}
	name := truncName(strings.Trim(sb.String(), "-"), 63)
	for n, candidate := 2, name; ; n++ {
		if _, taken := im.spec.Templates[candidate]; !taken {
			return candidate
		}
		suffix := fmt.Sprintf("-%d", n)
		candidate = truncName(name, 63-len(suffix)) + suffix
	}
}

// truncName cuts a sanitized name to at most n bytes without leaving a
// trailing '-'.
func truncName(name string, n int) string {
	if len(name) > n {
		name = name[:n]
	}
	return strings.TrimRight(name, "-")
}
