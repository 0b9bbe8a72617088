package pveemu

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// This file is the emulator's HTTP layer as pve-http-server
// (PVE::APIServer::AnyEvent) and pve-manager's PVE::HTTPServer behave:
// how a request's parameters are read from its query and body, and how an
// answer, an error above all, goes back on the wire.

// maxBody is pve-http-server's $limit_max_post: a larger body is refused.
const maxBody = 512 * 1024

// readParams gathers a request's parameters as PVE's extract_params does:
// the body of a POST or PUT (form-encoded, or JSON when the Content-Type
// says so), then the query string over it. Values keep the shape the
// request gave them (string, bool, list, object, nil) until normalize
// checks them against the endpoint's schema.
func readParams(r *http.Request) (map[string]any, error) {
	params := map[string]any{}
	if r.ContentLength != 0 {
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			return nil, &apiError{status: http.StatusNotImplemented, body: text,
				msg: fmt.Sprintf("Unexpected content for method '%s'", r.Method)}
		}
		if r.ContentLength > maxBody {
			return nil, &apiError{status: http.StatusNotImplemented, body: text, msg: "for data too large"}
		}
		ct := r.Header.Get("Content-Type")
		mt := mediaType(ct)
		if mt != "" && mt != "application/x-www-form-urlencoded" && mt != "application/json" {
			return nil, &apiError{status: 506, body: text, msg: fmt.Sprintf("upload 'Content-Type '%s' not implemented", ct)}
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err != nil {
			return nil, fmt.Errorf("reading the request body: %w", err)
		}
		if len(body) > maxBody {
			return nil, &apiError{status: http.StatusNotImplemented, body: text, msg: "for data too large"}
		}
		if mt == "application/json" {
			params, err = decodeJSONBody(body)
			if err != nil {
				return nil, err
			}
		} else {
			params = decodeURLEncoded(string(body))
		}
	}
	for k, v := range decodeURLEncoded(r.URL.RawQuery) {
		params[k] = v
	}
	delete(params, "_dc") // the GUI's cache buster, dropped by PVE
	return params, nil
}

// mediaType is parse_content_type's type: the header up to the first ';'
// or ',', compared as it is (PVE does not fold case).
func mediaType(ct string) string {
	if i := strings.IndexAny(ct, ";,"); i >= 0 {
		ct = ct[:i]
	}
	return strings.TrimRight(ct, " \t")
}

// decodeJSONBody decodes a JSON body into parameters. PVE dies on
// anything but an object, inside the request's eval: a 500 whose body is
// the error's text.
func decodeJSONBody(body []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, &apiError{status: http.StatusInternalServerError, body: text,
			msg: fmt.Sprintf("malformed JSON string: %v\n", err)}
	}
	if dec.More() {
		return nil, &apiError{status: http.StatusInternalServerError, body: text,
			msg: "garbage after JSON object\n"}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, &apiError{status: http.StatusInternalServerError, body: text, msg: "Not a HASH reference\n"}
	}
	return obj, nil
}

// decodeURLEncoded is pve-http-server's decode_urlencoded, quirks
// included: pairs are separated by '&' or ';', a pair is split at every
// '=' and only the first two parts kept, an empty value is no value at
// all (Perl's split drops trailing empty fields), and a repeated key
// collects its values in a list.
func decodeURLEncoded(data string) map[string]any {
	out := map[string]any{}
	if data == "" {
		return out
	}
	for _, kv := range strings.FieldsFunc(data, func(r rune) bool { return r == '&' || r == ';' }) {
		parts := strings.Split(kv, "=")
		for len(parts) > 0 && parts[len(parts)-1] == "" {
			parts = parts[:len(parts)-1]
		}
		if len(parts) == 0 {
			continue
		}
		k := percentDecode(parts[0])
		if len(parts) == 1 {
			out[k] = nil
			continue
		}
		v := percentDecode(parts[1])
		switch old := out[k].(type) {
		case string:
			out[k] = []any{old, v}
		case []any:
			out[k] = append(old, v)
		default:
			out[k] = v
		}
	}
	return out
}

// percentDecode turns '+' into a space and decodes %XX escapes, leaving
// malformed ones as they are.
func percentDecode(s string) string {
	s = strings.ReplaceAll(s, "+", " ")
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			n, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			b.WriteByte(byte(n))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// normalize checks the shapes of the request's values against the
// endpoint's parameters, as PVE's check_type does before the formats are
// looked at, and turns them into the strings the handlers read:
//
//   - JSON booleans are taken by boolean parameters only, as 1 or 0;
//   - JSON numbers by any scalar parameter, written as Perl prints them;
//   - lists (a JSON array, a repeated form key) by array parameters, and
//     by the "-list" formats joined with commas (RESTHandler's
//     normalize_legacy_param_formats), which also makes a single value
//     given to an array parameter a list of one;
//   - null, and a form key without a value, are no value at all.
//
// Keys the schema does not define are passed on, for validate to refuse.
func normalize(params []param, raw map[string]any) (values, errs map[string]string) {
	values, errs = map[string]string{}, map[string]string{}
	for k, v := range raw {
		p, known := lookupParam(params, k)
		switch v := v.(type) {
		case nil:
		case string:
			values[k] = v
		case json.Number:
			values[k] = perlNumber(v)
		case bool:
			if known && p.kind != kBoolean {
				errs[k] = fmt.Sprintf("type check ('%s') failed - got JSON::PP::Boolean", p.kind)
				continue
			}
			values[k] = strconv.Itoa(boolInt(v))
		case []any:
			sep := ","
			switch {
			case known && p.kind == kArray:
				sep = "\n"
			case known && (p.kind != kString || !strings.HasSuffix(p.format, "-list")):
				errs[k] = fmt.Sprintf("type check ('%s') failed - got ARRAY", p.kind)
				continue
			}
			parts := make([]string, 0, len(v))
			for _, el := range v {
				switch el := el.(type) {
				case string:
					parts = append(parts, el)
				case json.Number:
					parts = append(parts, perlNumber(el))
				case bool:
					parts = append(parts, strconv.Itoa(boolInt(el)))
				default:
					parts = append(parts, fmt.Sprint(el))
				}
			}
			values[k] = strings.Join(parts, sep)
		default:
			if known {
				errs[k] = fmt.Sprintf("type check ('%s') failed - got HASH", p.kind)
				continue
			}
			values[k] = fmt.Sprint(v)
		}
	}
	return values, errs
}

// perlNumber writes a JSON number as Perl stringifies the number
// JSON::XS decoded it to: integers as they are, other numbers with 15
// significant digits.
func perlNumber(n json.Number) string {
	if _, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return string(n)
	}
	f, err := n.Float64()
	if err != nil {
		return string(n)
	}
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.FormatFloat(f, 'f', 0, 64)
	}
	return strconv.FormatFloat(f, 'g', 15, 64)
}

// writeJSON answers 200 with the JSON envelope.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers an error as pve-http-server does. The first line of
// the message is the reason phrase of the status line ("HTTP/1.1 500 VM
// 100 not running"), which is where many clients read it; the body is the
// JSON envelope {"data": null, "message": …, "errors": …}, the bare
// message or nothing (see errorBody); and the connection is closed, as
// PVE keeps no connection alive after an answer of 400 or more.
//
// Go's ResponseWriter always writes the standard reason phrase, so the
// answer is written on the hijacked connection instead. Where that is not
// possible (HTTP/2, which has no reason phrase) it goes through the
// ResponseWriter, with Go's.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{status: http.StatusInternalServerError, msg: err.Error() + "\n"}
	}
	status, reason := ae.status, reasonPhrase(ae.status, ae.msg)
	var body []byte
	contentType := ""
	switch {
	case reason == "":
		// PVE answers a message with a carriage return as the client's
		// error, without a body.
		status, reason = http.StatusBadRequest, http.StatusText(http.StatusBadRequest)
	case ae.body == none:
	case ae.body == text:
		body = []byte(ae.msg)
	case ae.body == envelope:
		env := map[string]any{"data": nil, "message": ae.msg}
		if len(ae.errors) > 0 {
			env["errors"] = ae.errors
		}
		body, _ = json.Marshal(env)
		body = append(body, '\n')
		contentType = "application/json;charset=UTF-8"
	}
	h := http.Header{}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Connection", "close")
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	h.Set("Cache-Control", "max-age=0")
	h.Set("Pragma", "no-cache")
	h.Set("Server", "pve-api-daemon/3.0")
	if r.Method == http.MethodHead {
		body = nil
	}

	if r.ProtoMajor == 1 {
		conn, rw, herr := http.NewResponseController(w).Hijack()
		if herr == nil {
			defer conn.Close()
			writeRaw(rw.Writer, r, status, reason, h, body)
			return
		}
	}
	for k, v := range h {
		if k != "Date" && k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeRaw writes a whole HTTP/1.x answer with its own reason phrase.
func writeRaw(bw *bufio.Writer, r *http.Request, status int, reason string, h http.Header, body []byte) {
	fmt.Fprintf(bw, "HTTP/%d.%d %03d %s\r\n", r.ProtoMajor, r.ProtoMinor, status, reason)
	_ = h.Write(bw)
	_, _ = bw.WriteString("\r\n")
	_, _ = bw.Write(body)
	_ = bw.Flush()
}

// reasonPhrase is the status line's text PVE sends: the message's first
// line, or the standard text when there is none. A carriage return in
// that line answers "" (PVE turns such an answer into a 400).
func reasonPhrase(status int, msg string) string {
	line, _, _ := strings.Cut(msg, "\n")
	if strings.Contains(line, "\r") {
		return ""
	}
	if line == "" {
		if t := http.StatusText(status); t != "" {
			return t
		}
		return "Unknown"
	}
	return line
}

// dropConnection closes the client's connection without an answer, as a
// proxy or node going away mid-request does.
func dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// HTTP/2 cannot be hijacked; abort the stream instead.
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}
