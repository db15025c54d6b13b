package monitoring

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const dashboardFile = "grafana/retryhttp.json"

func TestCommittedDashboardIsGenerated(t *testing.T) {
	want, err := JSON()
	require.NoError(t, err)
	got, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	assert.Equal(t, string(want), string(got),
		"%s is stale: run `go run ./cmd/gen-dashboard > %s` in monitoring/", dashboardFile, dashboardFile)
}

// panel is the part of a dashboard panel these tests read.
type panel struct {
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr       string `json:"expr"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
}

func readDashboard(t *testing.T) (d struct {
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Type  string `json:"type"`
			Name  string `json:"name"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}) {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &d))
	return d
}

// seriesNames returns the names of the series the library exports, with a
// histogram's _bucket, _count and _sum.
func seriesNames(t *testing.T) map[string]bool {
	t.Helper()
	m, err := retryhttp.NewMetrics(nil)
	require.NoError(t, err)
	ch := make(chan *prometheus.Desc, 64)
	m.Describe(ch)
	close(ch)
	names := map[string]bool{}
	fqName := regexp.MustCompile(`fqName: "([a-z_]+)"`)
	for d := range ch {
		match := fqName.FindStringSubmatch(d.String())
		require.NotNil(t, match, d.String())
		names[match[1]] = true
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			names[match[1]+suffix] = true
		}
	}
	return names
}

func TestDashboardQueriesReadTheLibrarysSeries(t *testing.T) {
	d := readDashboard(t)
	assert.GreaterOrEqual(t, d.SchemaVersion, 41, "a current schemaVersion")
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Type+":"+v.Name)
	}
	assert.Equal(t, []string{"datasource:datasource", "query:job", "query:instance"}, vars)

	known := seriesNames(t)
	metric := regexp.MustCompile(`retryhttp_[a-z_]+`)
	queries := 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		assert.Equal(t, "${datasource}", p.Datasource.UID, p.Title)
		require.NotEmpty(t, p.Targets, p.Title)
		for _, target := range p.Targets {
			queries++
			assert.Equal(t, "${datasource}", target.Datasource.UID, p.Title)
			assert.Contains(t, target.Expr, `job=~"$job", instance=~"$instance"`, p.Title)
			names := metric.FindAllString(target.Expr, -1)
			require.NotEmpty(t, names, p.Title)
			for _, name := range names {
				assert.True(t, known[name], "%s: %s is not a series of the library", p.Title, name)
			}
		}
	}
	assert.Equal(t, 25, queries)
	for _, want := range []string{"Requests by outcome", "Retries by reason", "Amplification", "Give-up ratio", "Retry wait quantiles", "Retry wait distribution", "Budget refusals", "Retries available", "Held requests", "Throttled requests", "Hedges", "Paced requests", "Pace wait quantiles"} {
		assert.True(t, hasPanel(d.Panels, want), "missing panel %q", want)
	}
}

func hasPanel(panels []panel, title string) bool {
	for _, p := range panels {
		if strings.EqualFold(p.Title, title) {
			return true
		}
	}
	return false
}

// TestImportAsksForAPrometheus: Grafana's import screen finds the data source
// input it asks for (__inputs), and the Grafana version the dashboard needs
// (__requires); the input is what the datasource variable starts on.
func TestImportAsksForAPrometheus(t *testing.T) {
	b, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var d struct {
		Inputs []struct {
			Name, Type, PluginID string
		} `json:"__inputs"`
		Requires []struct {
			Type, ID, Version string
		} `json:"__requires"`
		SchemaVersion int `json:"schemaVersion"`
		Templating    struct {
			List []struct {
				Name    string `json:"name"`
				Current struct {
					Value string `json:"value"`
				} `json:"current"`
			} `json:"list"`
		} `json:"templating"`
	}
	require.NoError(t, json.Unmarshal(b, &d))
	require.Len(t, d.Inputs, 1)
	assert.Equal(t, DatasourceInput, d.Inputs[0].Name)
	assert.Equal(t, "datasource", d.Inputs[0].Type)
	assert.Equal(t, "prometheus", d.Inputs[0].PluginID)
	require.NotEmpty(t, d.Templating.List)
	assert.Equal(t, "datasource", d.Templating.List[0].Name)
	assert.Equal(t, "${"+DatasourceInput+"}", d.Templating.List[0].Current.Value,
		"the datasource variable starts on the data source chosen at import")
	var grafana string
	for _, r := range d.Requires {
		if r.Type == "grafana" {
			grafana = r.Version
		}
	}
	assert.Equal(t, MinGrafanaVersion, grafana)
	// Schema 42 is Grafana 12.2's: a new schema needs MinGrafanaVersion
	// checked again, and the docs (docs/metrics.md) with it.
	assert.Equal(t, 42, d.SchemaVersion, "the schema changed: check MinGrafanaVersion")
	docs, err := os.ReadFile("../docs/metrics.md")
	require.NoError(t, err)
	assert.Contains(t, string(docs), "Grafana "+strings.TrimSuffix(MinGrafanaVersion, ".0")+" or later",
		"docs/metrics.md states the minimum Grafana version")
}
