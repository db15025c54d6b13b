package retryhttp

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"time"
)

// logRetry writes one record for a retry about to happen, if the Transport
// has a logger that wants it.
func (t *Transport) logRetry(ctx context.Context, req *http.Request, attempt int, f failure, wait time.Duration, resp *http.Response, err error) {
	if t.logger == nil || !t.logger.Enabled(ctx, slog.LevelInfo) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", methodOf(req)),
		slog.String("url", redact(req.URL)),
		slog.Int("attempt", attempt),
		slog.String("reason", f.reason()),
		slog.Duration("wait", wait),
	}
	if resp != nil {
		attrs = append(attrs, slog.Int("status", resp.StatusCode))
	}
	if err != nil {
		if ue, ok := err.(*url.Error); ok { // its text holds the full URL
			err = ue.Err
		}
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	t.logger.LogAttrs(ctx, slog.LevelInfo, "retryhttp: retrying", attrs...)
}

func methodOf(req *http.Request) string {
	if req.Method == "" {
		return http.MethodGet
	}
	return req.Method
}

// redact returns u without userinfo, query or fragment: those often hold
// credentials and tokens.
func redact(u *url.URL) string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath, Opaque: u.Opaque}
	return r.String()
}
