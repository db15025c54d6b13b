package retryhttp

import (
	"log/slog"
	"net/http"
	"net/url"
	"time"
)

// logRetry writes one record for a retry about to happen, if the Transport
// has a logger that wants it.
func (t *Transport) logRetry(c *call, a *attempt, v *verdict) {
	if !t.logger.Enabled(c.ctx, slog.LevelInfo) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", methodOf(c.req)),
		slog.String("url", redact(a.out.URL)),
		slog.Int("attempt", a.number),
		slog.String("reason", v.f.reason()),
		slog.Duration("wait", v.wait),
	}
	if v.serverWait {
		attrs = append(attrs, slog.Bool("retry_after", true))
	}
	t.logger.LogAttrs(c.ctx, slog.LevelInfo, "retryhttp: retrying", appendOutcome(attrs, a.resp, a.err)...)
}

// logGiveUp writes one record for a request whose failed attempt is not
// retried, saying why: at Warn level, or Info when the caller canceled.
func (t *Transport) logGiveUp(c *call, out *http.Request, resp *http.Response, err error, s stopReason, v *verdict) {
	level := slog.LevelWarn
	if s == stopCanceled {
		level = slog.LevelInfo
	}
	if t.logger == nil || !t.logger.Enabled(c.ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", methodOf(c.req)),
		slog.String("url", redact(out.URL)),
		slog.Int("attempts", c.attempts),
		slog.String("reason", s.reason()),
		slog.String("why", t.explain(c, v, s)),
	}
	t.logger.LogAttrs(c.ctx, level, "retryhttp: giving up", appendOutcome(attrs, resp, err)...)
}

// logHold writes one record for an attempt held back until its host's
// quota refills.
func (t *Transport) logHold(c *call, a *attempt, until time.Time, wait time.Duration) {
	ctx := c.ctx
	if t.logger == nil || !t.logger.Enabled(ctx, slog.LevelInfo) {
		return
	}
	t.logger.LogAttrs(ctx, slog.LevelInfo, "retryhttp: holding for the host's quota",
		slog.String("method", methodOf(c.req)),
		slog.String("url", redact(a.out.URL)),
		slog.Int("attempt", a.number),
		slog.Time("until", until),
		slog.Duration("wait", wait))
}

// appendOutcome adds the attempt's status or error to attrs.
func appendOutcome(attrs []slog.Attr, resp *http.Response, err error) []slog.Attr {
	if resp != nil {
		attrs = append(attrs, slog.Int("status", resp.StatusCode))
	}
	if err != nil {
		if ue, ok := err.(*url.Error); ok { // its text holds the full URL
			err = ue.Err
		}
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	return attrs
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
