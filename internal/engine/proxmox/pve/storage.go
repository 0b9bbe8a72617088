package pve

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Storage is an entry of the cluster's storage configuration
// (storage.cfg, GET /storage).
type Storage struct {
	Storage string
	Type    string   // dir, lvmthin, rbd, nfs, …
	Content []string // images, rootdir, iso, …
	// Shared marks storage whose content every node it is configured on
	// reaches (Ceph, NFS, …): guests on it can be cloned to and run on
	// any of those nodes without copying their disks.
	Shared   bool
	Nodes    []string // the nodes it is configured on; empty: every node
	Disabled bool
	Digest   string // of storage.cfg
}

// On reports whether the storage can be used on node: enabled, and
// configured there (PVE's storage_check_enabled).
func (s Storage) On(node string) bool {
	return !s.Disabled && (len(s.Nodes) == 0 || slices.Contains(s.Nodes, node))
}

// Storages reads the cluster's storage configuration.
func (c *Client) Storages(ctx context.Context) ([]Storage, error) {
	var w []struct {
		Storage string `json:"storage"`
		Type    string `json:"type"`
		Content string `json:"content"`
		Shared  number `json:"shared"`
		Nodes   string `json:"nodes"`
		Disable number `json:"disable"`
		Digest  string `json:"digest"`
	}
	if err := c.do(ctx, http.MethodGet, "/storage", nil, &w); err != nil {
		return nil, err
	}
	out := make([]Storage, len(w))
	for i, s := range w {
		out[i] = Storage{Storage: s.Storage, Type: s.Type, Content: splitComma(s.Content), Shared: s.Shared != 0,
			Nodes: splitComma(s.Nodes), Disabled: s.Disable != 0, Digest: s.Digest}
	}
	return out, nil
}

// StorageStatus is a storage as one node sees it (GET
// /nodes/{node}/storage).
type StorageStatus struct {
	Storage string
	Type    string
	Content []string
	Enabled bool // enabled and configured on the node
	Active  bool // reachable
	Shared  bool
	Total   int64 // bytes
	Used    int64
	Avail   int64
}

// StorageQuery filters a node's storage list.
type StorageQuery struct {
	Content string // only storage taking this content type (images, …), enabled
	Enabled bool   // only storage not disabled
	// Target, another node: only shared storage both nodes have, the
	// storage a clone to Target can be written to.
	Target string
}

// NodeStorage lists the storage of node with its status.
func (c *Client) NodeStorage(ctx context.Context, node string, q StorageQuery) ([]StorageStatus, error) {
	p := url.Values{}
	if q.Content != "" {
		p.Set("content", q.Content)
	}
	if q.Enabled {
		p.Set("enabled", "1")
	}
	if q.Target != "" {
		p.Set("target", q.Target)
	}
	var w []struct {
		Storage string `json:"storage"`
		Type    string `json:"type"`
		Content string `json:"content"`
		Enabled number `json:"enabled"`
		Active  number `json:"active"`
		Shared  number `json:"shared"`
		Total   number `json:"total"`
		Used    number `json:"used"`
		Avail   number `json:"avail"`
	}
	if err := c.do(ctx, http.MethodGet, "/nodes/"+url.PathEscape(node)+"/storage", p, &w); err != nil {
		return nil, err
	}
	out := make([]StorageStatus, len(w))
	for i, s := range w {
		out[i] = StorageStatus{Storage: s.Storage, Type: s.Type, Content: splitComma(s.Content),
			Enabled: s.Enabled != 0, Active: s.Active != 0, Shared: s.Shared != 0,
			Total: int64(s.Total), Used: int64(s.Used), Avail: int64(s.Avail)}
	}
	return out, nil
}

func splitComma(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// Volumes lists the storage IDs the volumes of a VM's drives are on, the
// cloud-init drive and ISO images included ("local-lvm" of
// "local-lvm:vm-100-disk-0,size=8G"), each once, sorted. Drives naming no
// volume ("none", a host CD-ROM or device) are left out.
func (cfg VMConfig) Volumes() []string {
	var out []string
	for k, v := range cfg.Raw {
		if !isDriveKey(k) {
			continue
		}
		volid, _, _ := strings.Cut(v, ",")
		sid, _, ok := strings.Cut(volid, ":")
		if ok && !slices.Contains(out, sid) {
			out = append(out, sid)
		}
	}
	slices.Sort(out)
	return out
}

// isDriveKey reports whether a config key is a drive: ide0-3, sata0-5,
// scsi0-30, virtio0-15, efidisk0 or tpmstate0.
func isDriveKey(k string) bool {
	for _, bus := range []string{"ide", "sata", "scsi", "virtio"} {
		if _, ok := indexed(k, bus); ok {
			return true
		}
	}
	return k == "efidisk0" || k == "tpmstate0"
}
