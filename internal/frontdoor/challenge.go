package frontdoor

import (
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
)

const challengePrefix = "/.well-known/acme-challenge/"

// peerClient fetches a challenge answer from a peer site's front door.
var peerClient = &http.Client{
	Timeout: 3 * time.Second,
	Transport: &http.Transport{
		DialContext:       (&net.Dialer{Timeout: dialTimeout}).DialContext,
		DisableKeepAlives: true,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// serveChallenge answers an HTTP-01 challenge on the plain HTTP listener:
// ours if this front door holds the token, else the first of the host's
// routes' ChallengePeers that does (the name resolves to both sites, and
// the ACME server may ask either). It reports whether it answered.
func (s *Server) serveChallenge(w http.ResponseWriter, req *http.Request, t *table, host string) bool {
	if !strings.HasPrefix(req.URL.Path, challengePrefix) || req.Method != http.MethodGet {
		return false
	}
	if s.certs.handleChallenge(w, req) {
		return true
	}
	// A peer asks its own peers only if the request did not come from
	// one: two sites never bounce a token between them.
	if req.Header.Get(peerHeader) != "" {
		return false
	}
	var peers []string
	for _, r := range t.routes {
		if r.host == host {
			for _, p := range r.cfg.ChallengePeers {
				if !slices.Contains(peers, p) {
					peers = append(peers, p)
				}
			}
		}
	}
	for _, p := range peers {
		out, err := http.NewRequestWithContext(req.Context(), http.MethodGet, "http://"+p+req.URL.Path, nil)
		if err != nil {
			continue
		}
		out.Host = req.Host
		out.Header.Set(peerHeader, "1")
		resp, err := peerClient.Do(out)
		if err != nil {
			s.log.Info("ACME challenge: peer unreachable", "peer", p, "host", host, "err", err)
			continue
		}
		if resp.StatusCode != http.StatusOK {
			_ = resp.Body.Close()
			continue
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
		_ = resp.Body.Close()
		if err != nil {
			continue
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
		return true
	}
	return false
}

const peerHeader = "X-Holdfast-Challenge-Peer"
