// Package tappaas imports a TAPPaaS installation — its zones.json and its
// module JSON files, read exactly as TAPPaaS writes them — into a Holdfast
// spec. What the spec has no place for, or would reject, is not guessed at:
// it is listed in a Report next to the decisions the import took.
//
// The imported objects carry positions in the TAPPaaS files, so running
// spec.Validate on the result points its findings at zones.json or the
// module file the user wrote.
package tappaas

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/holdfast/holdfast/internal/engine/proxmox"
	"github.com/holdfast/holdfast/internal/spec"
)

// Options tune the import; zero fields take their defaults.
type Options struct {
	Cloud  string // cloud name; default "tappaas"
	Domain string // DNS domain; default "tappaas.internal"
	Engine string // engine of the one site; default "proxmox", which TAPPaaS runs on
}

// Defaults for Options.
const (
	DefaultCloud  = "tappaas"
	DefaultDomain = "tappaas.internal"
	DefaultEngine = "proxmox"
	// SiteName is the one site a TAPPaaS installation becomes.
	SiteName = "tappaas"
	// DefaultNode stands in for TAPPaaS's "first node of configuration.json"
	// when no module names a node.
	DefaultNode = "tappaas1"
)

// File is one input file: the name used in messages, and its content.
type File struct {
	Name string
	Data []byte
}

// Import reads zonesFile and moduleFiles and converts them. The error,
// when not nil, is a spec.ErrorList with every problem found in every
// file, each at file:line:col (or, for invalid options, a plain error);
// the spec is then nil. The report is always
// returned. Callers run spec.Validate on the spec; its findings point into
// the TAPPaaS files.
func Import(zonesFile string, moduleFiles []string, opts Options) (*spec.Spec, *Report, error) {
	opts, err := opts.check()
	if err != nil {
		return nil, &Report{}, err
	}
	im := newImporter()
	// A file that cannot be read is one more error; the others are still
	// read and checked, so that one run reports everything.
	read := func(name string) *File {
		data, err := readFile(name)
		if err != nil {
			im.errorf(spec.Pos{File: name}, "%v", err)
			return nil
		}
		return &File{Name: name, Data: data}
	}
	zones := read(zonesFile)
	var modules []File
	for _, name := range moduleFiles {
		if f := read(name); f != nil {
			modules = append(modules, *f)
		}
	}
	return im.run(zonesFile, zones, modules, opts)
}

// readFile reads a whole input file; its errors omit the name, which the
// diagnostic's position already gives.
func readFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err == nil {
		defer f.Close()
		var data []byte
		data, err = io.ReadAll(io.LimitReader(f, spec.MaxFileSize+1))
		if err == nil && len(data) > spec.MaxFileSize {
			return nil, fmt.Errorf("file is larger than %d MiB", spec.MaxFileSize>>20)
		}
		if err == nil {
			return data, nil
		}
	}
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		err = pe.Err
	}
	return nil, fmt.Errorf("cannot read: %w", err)
}

// ImportFiles is Import on contents already read.
func ImportFiles(zones File, modules []File, opts Options) (*spec.Spec, *Report, error) {
	opts, err := opts.check()
	if err != nil {
		return nil, &Report{}, err
	}
	return newImporter().run(zones.Name, &zones, modules, opts)
}

func newImporter() *importer {
	return &importer{
		report: &Report{},
		spec: &spec.Spec{
			Zones:     map[string]*spec.Zone{},
			Roles:     map[string]*spec.Role{},
			Templates: map[string]*spec.Template{},
			Instances: map[string]*spec.Instance{},
			Sites:     map[string]*spec.Site{},
		},
		modules:   map[string]*module{},
		vmnames:   map[string]*module{},
		templates: map[[2]string]*tmpl{},
		rulePaths: map[*spec.Rule]Entry{},
	}
}

// run imports the files; zones is nil when the zones file could not be read.
func (im *importer) run(zonesName string, zones *File, modules []File, opts Options) (*spec.Spec, *Report, error) {
	im.cloud(zonesName, opts)
	im.spec.Files = append(im.spec.Files, zonesName)
	if zones != nil {
		zsrc := newSource(zones.Name, zones.Data)
		if root, err := zsrc.parse(); err != nil {
			im.fail(err)
		} else {
			im.zones(zsrc, root)
		}
	}

	var mods []*module
	for _, f := range modules {
		im.spec.Files = append(im.spec.Files, f.Name)
		if m := im.readModule(newSource(f.Name, f.Data)); m != nil {
			mods = append(mods, m)
		}
	}
	for _, m := range mods {
		im.instance(m)
	}
	im.site(zonesName, mods)
	im.roles(mods)
	if !im.diags.HasErrors() {
		im.dropRejectedRules()
	}
	im.report.sortByFile(im.spec.Files)

	if err := im.diags.Err(); err != nil {
		return nil, im.report, err
	}
	// Sections left empty are dropped, as in a spec written by hand.
	s := im.spec
	s.Zones = nilIfEmpty(s.Zones)
	s.Roles = nilIfEmpty(s.Roles)
	s.Templates = nilIfEmpty(s.Templates)
	s.Instances = nilIfEmpty(s.Instances)
	return s, im.report, nil
}

func nilIfEmpty[T any](m map[string]T) map[string]T {
	if len(m) == 0 {
		return nil
	}
	return m
}

type importer struct {
	spec    *spec.Spec
	report  *Report
	diags   spec.Diagnostics
	modules map[string]*module // by module name (file name without .json)
	vmnames map[string]*module // modules that are instances, by vmname
	// templates maps (imageType, image) to the template's name.
	templates map[[2]string]*tmpl
	// rulePaths says where each rule was written, for the report.
	rulePaths map[*spec.Rule]Entry
	// notedVM is set once the cluster:vm decision has been noted.
	notedVM bool
}

func (im *importer) errorf(p spec.Pos, format string, args ...any) {
	im.diags.Errorf(p, format, args...)
}

// fail records a positioned error from the JSON reader.
func (im *importer) fail(err error) {
	if pe := (*posError)(nil); errors.As(err, &pe) {
		im.diags.Errorf(pe.pos, "%s", pe.msg)
		return
	}
	im.diags.Errorf(spec.Pos{}, "%v", err)
}

// check applies the defaults and checks the options as the loader checks
// the same fields in YAML, which the importer bypasses.
func (o Options) check() (Options, error) {
	o.Cloud = cmp.Or(o.Cloud, DefaultCloud)
	o.Domain = cmp.Or(o.Domain, DefaultDomain)
	o.Engine = cmp.Or(o.Engine, DefaultEngine)
	var errs []error
	if !validName(o.Cloud) {
		errs = append(errs, fmt.Errorf("cloud name %q is not a valid name (a letter, then letters, digits or '-', at most 63)", o.Cloud))
	}
	if !spec.ValidDomain(o.Domain) {
		errs = append(errs, fmt.Errorf("cloud domain %q is not a valid DNS name", o.Domain))
	}
	if o.Engine != "proxmox" && o.Engine != "local" {
		errs = append(errs, fmt.Errorf("engine %q is not one of local, proxmox", o.Engine))
	}
	return o, errors.Join(errs...)
}

// cloud makes the cloud and its one site from the options.
func (im *importer) cloud(file string, opts Options) {
	c := &spec.Cloud{Name: opts.Cloud, Domain: opts.Domain}
	c.SetPos(spec.Pos{File: file})
	im.spec.Cloud = c
	site := &spec.Site{Engine: opts.Engine}
	site.Name = SiteName
	site.SetPos(spec.Pos{File: file})
	im.spec.Sites[SiteName] = site
}

// site gives the one site the nodes the modules name.
func (im *importer) site(zonesFile string, mods []*module) {
	seen := map[string]bool{}
	for _, m := range mods {
		if m.node != "" {
			seen[m.node] = true
		}
	}
	nodes := spec.SortedNames(seen)
	if len(nodes) == 0 {
		nodes = []string{DefaultNode}
		im.report.note(zonesFile, "", "no module names a node: site %q gets node %s", SiteName, DefaultNode)
	} else {
		im.report.note(zonesFile, "", "site %q (engine %s) has the nodes the modules name: %s", SiteName, im.spec.Sites[SiteName].Engine, strings.Join(nodes, ", "))
	}
	site := im.spec.Sites[SiteName]
	site.Nodes = nodes
	if site.Engine == proxmox.Name {
		// TAPPaaS reaches the cluster through its first node's API; the
		// token is Holdfast's own (docs/proxmox-cluster.md says how to make
		// it), its secret read from the environment, never the spec.
		p := &proxmox.Block{Endpoint: "https://" + nodes[0] + ":8006", TokenID: ProxmoxToken, SecretEnv: ProxmoxSecretEnv}
		p.SetPos(site.Pos)
		site.Block = p
		im.report.note(zonesFile, "", "site %q reaches the cluster at %s with API token %s, its secret in $%s; adjust to your cluster", SiteName, p.Endpoint, p.TokenID, p.SecretEnv)
	}
}

// The API token an imported proxmox site uses, and where its secret is.
const (
	ProxmoxToken     = "holdfast@pve!apply"
	ProxmoxSecretEnv = "HOLDFAST_PVE_SECRET"
)

func validName(s string) bool { return spec.ValidName(s) }

// moduleName is how other modules' dependsOn refer to a module file: its
// name without .json.
func moduleName(file string) string {
	return strings.TrimSuffix(filepath.Base(file), ".json")
}
