package do

import (
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/retryhttp/retryhttp/cmd/retryhttp/internal/cli"
)

// check validates the flags and the URL, and returns the request they
// describe, without a body or a context yet.
func (f *doFlags) check(fs *flag.FlagSet, positional []string) (*http.Request, error) {
	maxDelayGiven, retryDelayGiven := false, false
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "data-binary":
			f.hasDataBinary = true
		case "json":
			f.hasJSON = true
		case "A":
			f.hasUserAgent = true
		case "max-delay":
			maxDelayGiven = true
		case "retry-delay":
			retryDelayGiven = true
		}
	})
	if len(positional) != 1 {
		return nil, fmt.Errorf("want exactly one URL, got %d arguments", len(positional))
	}
	target := positional[0]
	if !strings.Contains(target, "://") {
		target = "http://" + target // as curl does
	}
	if !cli.IsHTTPURL(target) {
		return nil, fmt.Errorf("%q is not an http or https URL", positional[0])
	}
	if f.hasJSON {
		if len(f.data) > 0 || f.hasDataBinary {
			return nil, errors.New("give one of -d, -data-binary and --json, not two")
		}
		f.dataBinary, f.hasDataBinary = f.json, true
	}
	if retryDelayGiven && !maxDelayGiven && f.policy.MaxDelay < f.policy.BaseDelay {
		f.policy.MaxDelay = f.policy.BaseDelay // curl's delay is fixed: one wait as long is allowed
	}
	if _, err := f.policy.Policy(); err != nil {
		return nil, err
	}
	switch {
	case f.startJitter < 0:
		return nil, errors.New("-start-jitter must not be negative")
	case f.hedge < 0:
		return nil, fmt.Errorf("-hedge: %v is negative; give the delay after which to send a second copy", f.hedge)
	case f.maxRedirects < 0:
		return nil, fmt.Errorf("-max-redirects: %d is negative (0 does not follow redirects)", f.maxRedirects)
	case len(f.data) > 0 && f.hasDataBinary:
		return nil, errors.New("give -d or -data-binary, not both")
	case f.head && (len(f.data) > 0 || f.hasDataBinary):
		return nil, errors.New("-I sends HEAD, which has no body: drop -d or -data-binary")
	case f.head && f.method != "" && f.method != http.MethodHead:
		return nil, fmt.Errorf("-I sends HEAD, not %s", f.method)
	case f.user != "" && !strings.Contains(f.user, ":"):
		return nil, errors.New("-u wants 'user:password' (the command never prompts)")
	}
	if err := checkWriteOut(f.writeOut); err != nil {
		return nil, fmt.Errorf("-w: %v", err)
	}
	method := f.method
	switch {
	case f.head:
		method = http.MethodHead
	case method == "" && (len(f.data) > 0 || f.hasDataBinary):
		method = http.MethodPost
	case method == "":
		method = http.MethodGet
	}
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		return nil, err
	}
	for _, line := range f.headers {
		name, value, ok := strings.Cut(line, ":")
		name, value = strings.TrimSpace(name), strings.Trim(value, " \t")
		switch {
		case !ok || name == "":
			return nil, fmt.Errorf("-H %q is not 'Name: value'", line)
		case !validHeaderName(name):
			return nil, fmt.Errorf("-H %q: %q is not a header name (letters, digits and !#$%%&'*+-.^_`|~)", line, name)
		case !validHeaderValue(value):
			return nil, fmt.Errorf("-H %q: the value has a control character (a line break?)", line)
		}
		req.Header.Add(name, value)
	}
	if f.hasJSON {
		for _, h := range []string{"Content-Type", "Accept"} {
			if req.Header.Get(h) == "" {
				req.Header.Set(h, "application/json")
			}
		}
	}
	if f.hasUserAgent && req.Header.Get("User-Agent") == "" {
		if !validHeaderValue(f.userAgent) {
			return nil, errors.New("-A: the value has a control character (a line break?)")
		}
		req.Header["User-Agent"] = []string{f.userAgent} // empty: net/http sends none
	}
	if host := req.Header.Get("Host"); host != "" { // as curl does: -H 'Host: x' names the virtual host
		if strings.ContainsAny(host, " /?#@\\") {
			return nil, fmt.Errorf("-H 'Host: %s': not a host name with an optional port", host)
		}
		req.Host = host
		req.Header.Del("Host")
	}
	if f.key != "" {
		k := f.key
		if k == "auto" {
			k = randomKey()
		}
		if !validHeaderValue(k) {
			return nil, errors.New("-idempotency-key: the key has a control character (a line break?)")
		}
		req.Header.Set("Idempotency-Key", k)
	}
	if f.caCert != "" {
		if _, err := loadCertPool(f.caCert); err != nil {
			return nil, err
		}
	}
	if f.user != "" {
		user, pass, _ := strings.Cut(f.user, ":")
		req.SetBasicAuth(user, pass)
	}
	return req, nil
}

// validHeaderName reports whether name is a token (RFC 9110, 5.6.2), as
// a header field name must be.
func validHeaderName(name string) bool {
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return name != ""
}

// validHeaderValue reports whether v has no control character but
// horizontal tab (RFC 9110, 5.5): a CR or LF would end the header.
func validHeaderValue(v string) bool {
	for _, c := range []byte(v) {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// loadCertPool reads the PEM certificates of -cacert.
func loadCertPool(name string) (*x509.CertPool, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("-cacert: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("-cacert %s: no PEM certificate in it", name)
	}
	return pool, nil
}

// sameOrigin reports whether a and b have the same scheme, host and port.
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) && portOf(a) == portOf(b)
}

func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}
