// Package monitoring builds the Grafana dashboard for retryhttp's metrics, as
// code, with the Grafana Foundation SDK. It lives in its own module so that
// the library's users do not inherit the SDK.
//
// The generated JSON is committed at grafana/retryhttp.json; regenerate it
// with `go run ./cmd/gen-dashboard > grafana/retryhttp.json` (a test fails
// when the two differ).
package monitoring

import (
	"encoding/json"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/heatmap"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// UID is the dashboard's fixed uid, so that links to it survive re-imports.
const UID = "retryhttp-overview"

// MinGrafanaVersion is the oldest Grafana the dashboard is for: it is written
// in dashboard schema version 42 (what the Foundation SDK writes), the schema
// of Grafana 12.2 and later. It is the dashboard's __requires entry for
// Grafana, which the import screen checks.
const MinGrafanaVersion = "12.2.0"

// DatasourceInput is the name of the data source input that Grafana's import
// screen asks for. Grafana replaces ${DS_PROMETHEUS} in the dashboard with
// the data source chosen there; the dashboard's "datasource" variable starts
// on it, and every panel and variable reads that variable, so the data source
// can still be changed afterwards, and a dashboard provisioned from a file
// (where nothing is replaced) starts on the default Prometheus.
const DatasourceInput = "DS_PROMETHEUS"

// sel is the label selector every query applies: the job and instance
// chosen in the dashboard's variables.
const sel = `job=~"$job", instance=~"$instance"`

// rate returns the per-second rate of a retryhttp counter over Grafana's
// rate interval, summed by the given labels.
func rate(by, metric, extra string) string {
	s := sel
	if extra != "" {
		s += ", " + extra
	}
	if by != "" {
		by += " "
	}
	return "sum" + by + "(rate(" + metric + "{" + s + "}[$__rate_interval]))"
}

// Queries shared by panels: the ratios are defined once.
var (
	requestRate = rate("", "retryhttp_requests_total", "")
	attemptRate = rate("", "retryhttp_attempts_total", "")
	retryRate   = rate("", "retryhttp_retries_total", "")
	giveUpRate  = rate("", "retryhttp_requests_total", `outcome=~"exhausted|too_late|budget|throttled"`)
	// net/http's transparent retries reach the servers too; a client
	// that never had one has no such series, hence "or vector(0)".
	resendRate    = rate("", "retryhttp_transparent_retries_total", "") + " or vector(0)"
	amplification = "(" + attemptRate + " + (" + resendRate + ")) / " + requestRate
	giveUpRatio   = giveUpRate + " / " + requestRate
	delayBuckets  = rate(" by (le)", "retryhttp_retry_delay_seconds_bucket", "")
	// The adaptive rate's pacing (WithAdaptiveRate): a client that never
	// paced an attempt has no such series, hence "or vector(0)" in the
	// share.
	pacedShare  = "(" + rate("", "retryhttp_paced_requests_total", "") + " or vector(0)) / " + attemptRate
	paceBuckets = rate(" by (le)", "retryhttp_pace_delay_seconds_bucket", "")
)

func datasource() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}
}

func query(expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().Datasource(datasource()).Expr(expr).LegendFormat(legend)
}

func labelVariable(name, label string) *dashboard.QueryVariableBuilder {
	q := "label_values(retryhttp_requests_total, " + label + ")"
	if name == "instance" {
		q = `label_values(retryhttp_requests_total{job=~"$job"}, instance)`
	}
	return dashboard.NewQueryVariableBuilder(name).
		Label(name).
		Datasource(datasource()).
		Query(dashboard.StringOrMap{String: cog.ToPtr(q)}).
		Definition(q).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc).
		Multi(true).
		IncludeAll(true).
		AllValue(".*").
		Current(dashboard.VariableOption{Text: dashboard.StringOrArrayOfString{String: cog.ToPtr("All")}, Value: dashboard.StringOrArrayOfString{String: cog.ToPtr("$__all")}})
}

func statPanel(title, description, unit, expr string) *stat.PanelBuilder {
	return stat.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource()).
		Unit(unit).
		Height(5).
		Span(6).
		GraphMode(common.BigValueGraphModeArea).
		WithTarget(query(expr, title))
}

func seriesPanel(title, description, unit string, targets ...*prometheus.DataqueryBuilder) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource()).
		Unit(unit).
		Min(0).
		Height(8).
		Span(12)
	for _, t := range targets {
		p = p.WithTarget(t)
	}
	return p
}

// Dashboard returns the retryhttp dashboard.
func Dashboard() (dashboard.Dashboard, error) {
	return dashboard.NewDashboardBuilder("retryhttp").
		Uid(UID).
		Description("Requests, retries, give-ups and waits of retryhttp Transports (github.com/retryhttp/retryhttp).").
		Tags([]string{"retryhttp", "http", "retries"}).
		Refresh("30s").
		Time("now-1h", "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").Label("Data source").Type("prometheus").
			Current(dashboard.VariableOption{
				Text:  dashboard.StringOrArrayOfString{String: cog.ToPtr("${" + DatasourceInput + "}")},
				Value: dashboard.StringOrArrayOfString{String: cog.ToPtr("${" + DatasourceInput + "}")},
			})).
		WithVariable(labelVariable("job", "job")).
		WithVariable(labelVariable("instance", "instance")).
		WithRow(dashboard.NewRowBuilder("Overview")).
		WithPanel(statPanel("Requests", "RoundTrip calls per second.", "reqps", requestRate)).
		WithPanel(statPanel("Amplification", "What the servers receive per request: attempts, and net/http's transparent retries of them (retryhttp_transparent_retries_total). 1 means no retries; a retry storm shows here first.", "x", amplification).
			Decimals(2)).
		WithPanel(statPanel("Give-up ratio", "Share of requests that ended still failing because attempts ran out (exhausted), the wait was too long (too_late), the retry budget refused (budget) or the host's quota was spent, or its adaptive rate had no token, for longer than the request could wait (throttled).", "percentunit", giveUpRatio)).
		WithPanel(statPanel("Retries", "Retries scheduled per second.", "reqps", retryRate)).
		WithRow(dashboard.NewRowBuilder("Requests and retries")).
		WithPanel(seriesPanel("Requests by outcome", "How RoundTrip calls ended: ok, exhausted, not_retryable, too_late, canceled, budget, throttled.", "reqps",
			query(rate(" by (outcome)", "retryhttp_requests_total", ""), "{{outcome}}"))).
		WithPanel(seriesPanel("Retries by reason", "What caused each retry: a status code, or connect, reset, timeout; and the attempts net/http sent again on its own (a reused connection reset, an HTTP/2 stream refused), which the Policy never sees.", "reqps",
			query(rate(" by (reason)", "retryhttp_retries_total", ""), "{{reason}}"),
			query(resendRate, "net/http transparent retries"))).
		WithPanel(seriesPanel("Attempts by status code", "Every attempt sent, the first ones included; error means no response.", "reqps",
			query(rate(" by (code)", "retryhttp_attempts_total", ""), "{{code}}"))).
		WithPanel(seriesPanel("Amplification and give-up ratio", "What the servers receive per request, net/http's transparent retries included (left), and the share of requests given up (right).", "x",
			query(amplification, "attempts per request"),
			query(giveUpRatio, "give-up ratio")).
			OverrideByName("give-up ratio", []dashboard.DynamicConfigValue{
				{Id: "unit", Value: "percentunit"},
				{Id: "custom.axisPlacement", Value: "right"},
			})).
		WithRow(dashboard.NewRowBuilder("Waits")).
		WithPanel(seriesPanel("Retry wait quantiles", "Waits before retries, from backoff and Retry-After together.", "s",
			query("histogram_quantile(0.5, "+delayBuckets+")", "p50"),
			query("histogram_quantile(0.9, "+delayBuckets+")", "p90"),
			query("histogram_quantile(0.99, "+delayBuckets+")", "p99"))).
		WithPanel(heatmap.NewPanelBuilder().
			Title("Retry wait distribution").
			Description("Waits before retries per bucket: backoff and Retry-After.").
			Datasource(datasource()).
			Height(8).
			Span(12).
			Calculate(false).
			Color(heatmap.NewHeatmapColorOptionsBuilder().Mode(heatmap.HeatmapColorModeScheme).Scheme("Oranges").Steps(64).Exponent(0.5).Fill("dark-orange")).
			WithTarget(query(rate(" by (le)", "retryhttp_retry_delay_seconds_bucket", ""), "{{le}}").
				Format(prometheus.PromQueryFormatHeatmap))).
		WithPanel(seriesPanel("Retry waits by source", "Waits per second by where they came from: the policy's backoff or the server's Retry-After.", "reqps",
			query(rate(" by (source)", "retryhttp_retry_delay_seconds_count", ""), "{{source}}"))).
		WithRow(dashboard.NewRowBuilder("Retry budget")).
		WithPanel(seriesPanel("Budget refusals", "Retries the retry budget refused per second: each ended its request with outcome budget. Sustained refusals mean a dependency has been failing for a while and retries are being held back.", "reqps",
			query(rate("", "retryhttp_budget_refusals_total", ""), "refusals"))).
		WithPanel(seriesPanel("Retries available", "Retries the budgets would allow right now: 20% of the last 10 s of requests plus a floor of two (refilled one every two minutes), less the retries spent.", "short",
			query("sum(retryhttp_budget_retries_available{"+sel+"})", "available"))).
		WithRow(dashboard.NewRowBuilder("Hedging")).
		WithPanel(seriesPanel("Hedges", "Hedges sent per second (extra copies of slow idempotent requests) and hedges whose answer won the race. Hedges are paid for from the retry budget; a high rate of wins means the first copies are often slow.", "reqps",
			query(rate("", "retryhttp_hedges_total", ""), "hedges sent"),
			query(rate("", "retryhttp_hedge_wins_total", ""), "hedges that won"))).
		WithRow(dashboard.NewRowBuilder("Throttling")).
		WithPanel(seriesPanel("Held requests", "Attempts held back per second because their host said its quota was spent (a 429 with Retry-After or a rate-limit reset, GitHub's 403, RateLimit r=0), until it refilled: requests that would otherwise have met a certain 429.", "reqps",
			query(rate(" by (method)", "retryhttp_held_requests_total", ""), "{{method}}"))).
		WithPanel(seriesPanel("Throttled requests", "Requests not sent at all per second: their host's quota was spent, or its adaptive rate had no token, until after their deadline or MaxRetryAfter, or they had retries off (outcome throttled, ErrThrottled).", "reqps",
			query(rate("", "retryhttp_requests_total", `outcome="throttled"`), "throttled"))).
		WithRow(dashboard.NewRowBuilder("Adaptive rate")).
		WithPanel(seriesPanel("Paced requests", "Attempts per second that waited for their host's adaptive rate (WithAdaptiveRate), by method (left), and their share of the attempts sent (right). The rate wakes when a host throttles without saying how much (a bare 429 or 503): a rising share means a host is throttling and the client is slowing down to its capacity.", "reqps",
			query(rate(" by (method)", "retryhttp_paced_requests_total", ""), "{{method}}"),
			query(pacedShare, "share of attempts paced")).
			OverrideByName("share of attempts paced", []dashboard.DynamicConfigValue{
				{Id: "unit", Value: "percentunit"},
				{Id: "custom.axisPlacement", Value: "right"},
			})).
		WithPanel(seriesPanel("Pace wait quantiles", "How long the paced attempts waited for their host's adaptive rate: one token at the host's current rate, or longer when many requests queue for it.", "s",
			query("histogram_quantile(0.5, "+paceBuckets+")", "p50"),
			query("histogram_quantile(0.99, "+paceBuckets+")", "p99"))).
		Build()
}

// JSON returns the dashboard as indented JSON, ready to import into Grafana.
func JSON() ([]byte, error) {
	d, err := Dashboard()
	if err != nil {
		return nil, err
	}
	body, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	head, err := json.MarshalIndent(importHeader(), "", "  ")
	if err != nil {
		return nil, err
	}
	// {"__inputs": ..., "__requires": ...} and then the dashboard's own
	// fields, in one object: Grafana's import screen reads the first two.
	b := append(head[:len(head)-2], ",\n"...)
	b = append(b, body[2:]...)
	return append(b, '\n'), nil
}

// importInput and importRequirement are the entries of __inputs and
// __requires, the fields of an exported dashboard that Grafana's import
// screen reads: what to ask the user for, and what the dashboard needs.
type importInput struct {
	Name        string `json:"name"`
	Label       string `json:"label"`
	Description string `json:"description"`
	Type        string `json:"type"`
	PluginID    string `json:"pluginId"`
	PluginName  string `json:"pluginName"`
}

type importRequirement struct {
	Type    string `json:"type"`
	ID      string `json:"id"`
	Name    string `json:"name"`
	Version string `json:"version"`
}

func importHeader() any {
	return struct {
		Inputs   []importInput       `json:"__inputs"`
		Requires []importRequirement `json:"__requires"`
	}{
		Inputs: []importInput{{
			Name:        DatasourceInput,
			Label:       "Prometheus",
			Description: "The Prometheus that scrapes the retryhttp_* series",
			Type:        "datasource",
			PluginID:    "prometheus",
			PluginName:  "Prometheus",
		}},
		Requires: []importRequirement{
			{Type: "grafana", ID: "grafana", Name: "Grafana", Version: MinGrafanaVersion},
			{Type: "datasource", ID: "prometheus", Name: "Prometheus", Version: "1.0.0"},
			{Type: "panel", ID: "heatmap", Name: "Heatmap", Version: ""},
			{Type: "panel", ID: "stat", Name: "Stat", Version: ""},
			{Type: "panel", ID: "timeseries", Name: "Time series", Version: ""},
		},
	}
}
