package guest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/holdfast/holdfast/internal/compile"
)

// The metadata service: cloud-init's NoCloud datasource over HTTP, for
// instances that boot stock cloud images (Proxmox). The engine seeds each
// VM with NoCloudSeed (in its SMBIOS serial); cloud-init then reads
//
//	GET /nocloud/{token}/meta-data       instance-id and hostname
//	GET /nocloud/{token}/user-data       #cloud-config that installs and starts the agent
//	GET /nocloud/{token}/vendor-data     empty
//	GET /nocloud/{token}/network-config  network config v2: the static addresses
//	GET /nocloud/{token}/holdfast        the agent binary
//
// Each is answered only when the token is an instance's current one and
// the request comes from one of that instance's addresses; anything else
// is the same 404, so that a prober learns nothing, not even that a token
// exists.

// NoCloudPath is the seed's path under the metadata service's URL.
func NoCloudPath(token string) string { return "/nocloud/" + token + "/" }

// NoCloudSeed is what a VM's SMBIOS serial holds so that cloud-init seeds
// from the metadata service at base (http://host:port): the nocloud-net
// name, which cloud-init before 24.1 (Debian 12's 22.4) needs for a seed
// over HTTP and later versions still accept.
func NoCloudSeed(base, token string) string {
	return "ds=nocloud-net;s=" + strings.TrimSuffix(base, "/") + NoCloudPath(token)
}

// ParseNoCloudSeed reads a seed NoCloudSeed made: the metadata service's
// URL and the token; false when seed is not one.
func ParseNoCloudSeed(seed string) (base, token string, ok bool) {
	rest, ok := strings.CutPrefix(seed, "ds=nocloud-net;s=")
	if !ok {
		return "", "", false
	}
	rest, ok = strings.CutSuffix(rest, "/")
	if !ok {
		return "", "", false
	}
	i := strings.LastIndex(rest, "/nocloud/")
	if i < 0 || !strings.HasPrefix(rest[i+len("/nocloud/"):], TokenPrefix) {
		return "", "", false
	}
	return rest[:i], rest[i+len("/nocloud/"):], true
}

// Where the user-data puts the agent in the instance.
const (
	agentConfigFile = "/etc/holdfast/agent.json"
	agentTokenFile  = "/etc/holdfast/agent.token"
	agentStateDir   = "/var/lib/holdfast-agent"
	agentBinaryFile = "/usr/local/bin/holdfast"
	agentUnitFile   = "/etc/systemd/system/holdfast-agent.service"
	agentInstaller  = "/usr/local/lib/holdfast/install-agent"
)

func (s *Server) noCloudRoutes(mux *http.ServeMux) {
	for name, h := range map[string]func(http.ResponseWriter, *http.Request, *compile.State, compile.Instance, string){
		"meta-data": s.metaData,
		"user-data": s.userData,
		"vendor-data": func(w http.ResponseWriter, _ *http.Request, _ *compile.State, _ compile.Instance, _ string) {
			text(w, "")
		},
		"network-config": s.networkConfig,
		"holdfast":       s.agentBinary,
	} {
		mux.HandleFunc("GET /nocloud/{token}/"+name, func(w http.ResponseWriter, r *http.Request) {
			token := r.PathValue("token")
			st, in, ok := s.noCloudCaller(r, token)
			if !ok {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Cache-Control", "no-store")
			h(w, r, st, in, token)
		})
	}
}

// noCloudCaller is the instance whose current token this is, when the
// request comes from its address. Unlike the agent API, a connection
// through the local socket is not trusted alone: the metadata service is
// for instances on a network.
func (s *Server) noCloudCaller(r *http.Request, token string) (*compile.State, compile.Instance, bool) {
	return s.instanceOf(r, token, false)
}

func text(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, body)
}

func yamlDoc(w http.ResponseWriter, head string, v any) {
	b, err := yaml.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	text(w, head+string(b))
}

// InstanceID is the cloud-init instance-id of an instance: the same for
// the life of its VM, another when the VM is made again (a new VMID, a
// rebuild), so that cloud-init runs its first boot again then and only
// then.
func InstanceID(cloud string, in compile.Instance) string {
	return fmt.Sprintf("holdfast-%s-%s-%s-%d-%d", cloud, in.Site, in.Name, in.VMID, in.Rebuild)
}

func (s *Server) metaData(w http.ResponseWriter, _ *http.Request, st *compile.State, in compile.Instance, _ string) {
	yamlDoc(w, "", map[string]string{"instance-id": InstanceID(st.Cloud, in), "local-hostname": in.Name})
}

// networkConfig is cloud-init's network config version 2: each NIC by its
// MAC, its static address, the first's gateway as default route and name
// server, as the engine gives PVE's own cloud-init drive.
func (s *Server) networkConfig(w http.ResponseWriter, _ *http.Request, st *compile.State, in compile.Instance, _ string) {
	type route struct {
		To  string `yaml:"to"`
		Via string `yaml:"via"`
	}
	type nameservers struct {
		Addresses []string `yaml:"addresses"`
		Search    []string `yaml:"search,omitempty"`
	}
	type ethernet struct {
		Match       map[string]string `yaml:"match,omitempty"`
		SetName     string            `yaml:"set-name,omitempty"`
		Addresses   []string          `yaml:"addresses"`
		Routes      []route           `yaml:"routes,omitempty"`
		Nameservers *nameservers      `yaml:"nameservers,omitempty"`
	}
	eths := map[string]ethernet{}
	for _, nic := range in.NICs {
		name := "eth" + strconv.Itoa(nic.Index)
		e := ethernet{Addresses: []string{nic.IP + "/" + strconv.Itoa(nic.Prefix)}}
		if nic.MAC != "" {
			e.Match, e.SetName = map[string]string{"macaddress": strings.ToLower(nic.MAC)}, name
		}
		if nic.Index == 0 && nic.Gateway != "" {
			// 0.0.0.0/0 rather than "default": cloud-init renders v2
			// itself on Debian (networkd, ENI), and older ones know only
			// the prefix.
			to := "0.0.0.0/0"
			if strings.Contains(nic.Gateway, ":") {
				to = "::/0"
			}
			e.Routes = []route{{To: to, Via: nic.Gateway}}
			e.Nameservers = &nameservers{Addresses: []string{nic.Gateway}}
			if st.Domain != "" {
				e.Nameservers.Search = []string{st.Domain}
			}
		}
		eths[name] = e
	}
	yamlDoc(w, "", map[string]any{"version": 2, "ethernets": eths})
}

// userData is the #cloud-config that installs the agent. It replaces the
// user-data of PVE's own cloud-init drive (cloud-init takes the seed's),
// so it carries what that one did: the hostname, root and its SSH keys.
func (s *Server) userData(w http.ResponseWriter, r *http.Request, st *compile.State, in compile.Instance, token string) {
	sum, err := s.agentSum()
	if err != nil {
		s.log().Error("guest: the agent binary", "err", err)
		http.Error(w, "the agent binary is not available; see the control plane's log", http.StatusInternalServerError)
		return
	}
	base := "http://" + r.Host
	if r.TLS != nil {
		base = "https://" + r.Host
	}
	settings, _ := json.MarshalIndent(AgentSettings{Server: base, TokenFile: agentTokenFile, StateDir: agentStateDir}, "", "  ")
	type file struct {
		Path        string `yaml:"path"`
		Permissions string `yaml:"permissions"`
		Owner       string `yaml:"owner,omitempty"`
		Content     string `yaml:"content"`
	}
	doc := struct {
		Hostname       string     `yaml:"hostname"`
		FQDN           string     `yaml:"fqdn,omitempty"`
		ManageEtcHosts bool       `yaml:"manage_etc_hosts"`
		User           string     `yaml:"user"`
		DisableRoot    bool       `yaml:"disable_root"`
		SSHKeys        []string   `yaml:"ssh_authorized_keys,omitempty"`
		BootCmd        [][]string `yaml:"bootcmd"`
		WriteFiles     []file     `yaml:"write_files"`
		RunCmd         [][]string `yaml:"runcmd"`
	}{
		Hostname: in.Name, FQDN: in.FQDN, ManageEtcHosts: true, User: "root", SSHKeys: in.SSHKeys,
		// Every boot, not only the first: a rotated token reaches the VM
		// through its new seed at its next boot, and the agent reads the
		// file again when the server refuses the old one.
		BootCmd: [][]string{{"sh", "-c", `umask 077 && mkdir -p "${1%/*}" && printf '%s\n' "$2" > "$1.new" && mv "$1.new" "$1"`, "sh", agentTokenFile, token}},
		WriteFiles: []file{
			{Path: agentConfigFile, Permissions: "0644", Content: string(settings) + "\n"},
			{Path: agentTokenFile, Permissions: "0600", Content: token + "\n"},
			{Path: agentUnitFile, Permissions: "0644", Content: agentUnit},
			// 0700: it holds the token in its URL.
			{Path: agentInstaller, Permissions: "0700", Content: installScript(base+NoCloudPath(token)+"holdfast", sum)},
		},
		RunCmd: [][]string{{agentInstaller}},
	}
	yamlDoc(w, "#cloud-config\n", doc)
}

const agentUnit = `[Unit]
Description=Holdfast agent
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=` + agentBinaryFile + ` agent --config ` + agentConfigFile + `
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
`

// installScript downloads the agent with curl or wget (whichever the
// image has), refuses it unless its SHA-256 is the one given, installs it
// and starts its unit. The metadata service may not be reachable the
// moment the network is up: the download is tried for about a minute.
func installScript(url, sum string) string {
	return `#!/bin/sh
# Written by Holdfast's cloud-init user-data: installs and starts the Holdfast agent.
set -eu
url='` + url + `'
sum='` + sum + `'
bin='` + agentBinaryFile + `'
mkdir -p "${bin%/*}"
tmp=$(mktemp "${bin%/*}/.holdfast.XXXXXX")
trap 'rm -f "$tmp"' EXIT
fetch() {
	if command -v curl >/dev/null 2>&1; then
		curl -fsS -o "$tmp" "$url"
	elif command -v wget >/dev/null 2>&1; then
		wget -q -O "$tmp" "$url"
	else
		echo "holdfast: neither curl nor wget is installed" >&2
		exit 1
	fi
}
tries=0
until fetch; do
	tries=$((tries + 1))
	if [ "$tries" -ge 30 ]; then
		echo "holdfast: the agent could not be downloaded from the metadata service" >&2
		exit 1
	fi
	sleep 2
done
if [ "$(sha256sum "$tmp" | cut -d' ' -f1)" != "$sum" ]; then
	echo "holdfast: the downloaded agent's SHA-256 is not $sum; not installed" >&2
	exit 1
fi
chmod 0755 "$tmp"
mv "$tmp" "$bin"
trap - EXIT
systemctl daemon-reload
systemctl enable holdfast-agent.service
systemctl restart holdfast-agent.service
`
}

// agentPath is the binary the metadata service hands out.
func (s *Server) agentPath() (string, error) {
	if s.AgentBinary != "" {
		return s.AgentBinary, nil
	}
	return os.Executable()
}

// sums caches binaries' SHA-256 by path, size and modification time: a
// binary is read once, and again only when it is replaced.
var sums struct {
	sync.Mutex
	m map[string]sumEntry
}

type sumEntry struct {
	size  int64
	mtime time.Time
	sum   string
}

func (s *Server) agentSum() (string, error) {
	path, err := s.agentPath()
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	sums.Lock()
	defer sums.Unlock()
	if e, ok := sums.m[path]; ok && e.size == fi.Size() && e.mtime.Equal(fi.ModTime()) {
		return e.sum, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	if sums.m == nil {
		sums.m = map[string]sumEntry{}
	}
	e := sumEntry{size: fi.Size(), mtime: fi.ModTime(), sum: hex.EncodeToString(h.Sum(nil))}
	sums.m[path] = e
	return e.sum, nil
}

func (s *Server) agentBinary(w http.ResponseWriter, r *http.Request, _ *compile.State, _ compile.Instance, _ string) {
	path, err := s.agentPath()
	if err == nil {
		var f *os.File
		if f, err = os.Open(path); err == nil {
			defer f.Close()
			var fi os.FileInfo
			if fi, err = f.Stat(); err == nil {
				w.Header().Set("Content-Type", "application/octet-stream")
				http.ServeContent(w, r, "holdfast", fi.ModTime(), f)
				return
			}
		}
	}
	s.log().Error("guest: the agent binary", "err", err)
	http.Error(w, "the agent binary is not available; see the control plane's log", http.StatusInternalServerError)
}
