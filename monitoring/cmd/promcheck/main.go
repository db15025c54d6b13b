// Command promcheck evaluates, through a running Prometheus's HTTP API, every
// query of the retryhttp dashboard and every expression of the alert rules,
// and fails if any of them errors or returns no data. It is the checking half
// of e2e.sh.
//
//	promcheck -prometheus http://127.0.0.1:9090 -job retryhttp-e2e \
//	    -dashboard grafana/retryhttp.json -rules prometheus/alerts.yml
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

func main() {
	prom := flag.String("prometheus", "http://127.0.0.1:9090", "Prometheus base URL")
	job := flag.String("job", "retryhttp-e2e", "the scrape job whose series the queries must find")
	dashboard := flag.String("dashboard", "grafana/retryhttp.json", "dashboard JSON")
	rules := flag.String("rules", "prometheus/alerts.yml", "alerting rules YAML")
	wait := flag.Duration("wait", 90*time.Second, "how long to wait for every query to have data")
	flag.Parse()

	c := &checker{base: strings.TrimRight(*prom, "/"), job: *job}
	if err := c.run(*dashboard, *rules, *wait); err != nil {
		fmt.Fprintln(os.Stderr, "promcheck:", err)
		os.Exit(1)
	}
}

type checker struct {
	base string
	job  string
}

// check is one expression to evaluate.
type check struct {
	what string // "panel Requests by outcome" or "alert RetryhttpRetryStorm"
	expr string
}

func (c *checker) run(dashboardFile, rulesFile string, wait time.Duration) error {
	checks, labelQueries, err := dashboardChecks(dashboardFile)
	if err != nil {
		return err
	}
	alerts, err := ruleChecks(rulesFile)
	if err != nil {
		return err
	}
	checks = append(checks, alerts...)

	// Prometheus needs a few scrapes before rates exist, and the driver's
	// failures are random: retry the whole set until it passes or time is up.
	deadline := time.Now().Add(wait)
	for {
		failures := c.evaluate(checks, labelQueries, false)
		if failures == 0 {
			break
		}
		if time.Now().After(deadline) {
			c.evaluate(checks, labelQueries, true)
			return fmt.Errorf("%d of %d checks still fail after %v", failures, len(checks)+len(labelQueries), wait)
		}
		time.Sleep(2 * time.Second)
	}
	c.evaluate(checks, labelQueries, true)
	if err := c.rulesHealthy(len(alerts)); err != nil {
		return err
	}
	fmt.Printf("promcheck: %d dashboard queries, %d variables and %d alert expressions return data\n",
		len(checks)-len(alerts), len(labelQueries), len(alerts))
	return nil
}

// evaluate runs every check once and returns how many failed.
func (c *checker) evaluate(checks []check, labelQueries []labelQuery, report bool) int {
	failures := 0
	for _, ch := range checks {
		n, err := c.query(ch.expr)
		if err == nil && n == 0 {
			err = errors.New("no data")
		}
		failures += result(report, ch.what, ch.expr, n, err)
	}
	for _, lq := range labelQueries {
		n, err := c.labelValues(lq)
		if err == nil && n == 0 {
			err = errors.New("no values")
		}
		failures += result(report, "variable "+lq.name, lq.match+" "+lq.label, n, err)
	}
	return failures
}

func result(report bool, what, expr string, n int, err error) int {
	if err != nil {
		if report {
			fmt.Printf("FAIL %s: %v\n     %s\n", what, err, expr)
		}
		return 1
	}
	if report {
		fmt.Printf("ok   %s (%d series)\n", what, n)
	}
	return 0
}

// substitute replaces the dashboard's variables the way Grafana would for
// this job, with a rate interval that suits a 1 s scrape interval.
func (c *checker) substitute(expr string) string {
	r := strings.NewReplacer(
		"$__rate_interval", "15s",
		"$__interval", "5s",
		"$__range", "1m",
		"$job", regexp.QuoteMeta(c.job),
		"$instance", ".+",
	)
	return r.Replace(expr)
}

// query evaluates expr now and returns how many series have a number.
func (c *checker) query(expr string) (int, error) {
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := c.get("/api/v1/query?query="+url.QueryEscape(c.substitute(expr)), &body); err != nil {
		return 0, err
	}
	if body.Status != "success" {
		return 0, fmt.Errorf("status %s: %s", body.Status, body.Error)
	}
	n := 0
	for _, r := range body.Data.Result {
		s, _ := r.Value[1].(string)
		if v, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(v) {
			n++
		}
	}
	return n, nil
}

func (c *checker) labelValues(lq labelQuery) (int, error) {
	var body struct {
		Status string   `json:"status"`
		Error  string   `json:"error"`
		Data   []string `json:"data"`
	}
	path := "/api/v1/label/" + url.PathEscape(lq.label) + "/values?match[]=" + url.QueryEscape(c.substitute(lq.match))
	if err := c.get(path, &body); err != nil {
		return 0, err
	}
	if body.Status != "success" {
		return 0, fmt.Errorf("status %s: %s", body.Status, body.Error)
	}
	return len(body.Data), nil
}

// rulesHealthy checks that Prometheus loaded the rule file and evaluates
// every rule without error.
func (c *checker) rulesHealthy(want int) error {
	var body struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := c.get("/api/v1/rules", &body); err != nil {
		return err
	}
	n := 0
	for _, g := range body.Data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health != "ok" {
				return fmt.Errorf("rule %s: health %q: %s", r.Name, r.Health, r.LastError)
			}
		}
	}
	if n != want {
		return fmt.Errorf("prometheus loaded %d rules, the file has %d", n, want)
	}
	return nil
}

func (c *checker) get(path string, into any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, into); err != nil {
		return fmt.Errorf("%s: HTTP %d: %w", path, resp.StatusCode, err)
	}
	return nil
}

// labelQuery is a Grafana label_values(match, label) variable query.
type labelQuery struct {
	name, match, label string
}

var labelValuesCall = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// dashboardChecks returns the queries of every panel (rows included) and the
// label_values queries of the dashboard's variables.
func dashboardChecks(file string) ([]check, []labelQuery, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, err
	}
	type panel struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var d struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Type  string `json:"type"`
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", file, err)
	}
	var checks []check
	var add func(p panel)
	add = func(p panel) {
		for _, t := range p.Targets {
			if t.Expr != "" {
				checks = append(checks, check{"panel " + p.Title, t.Expr})
			}
		}
		for _, raw := range p.Panels {
			var inner panel
			if json.Unmarshal(raw, &inner) == nil {
				add(inner)
			}
		}
	}
	for _, p := range d.Panels {
		add(p)
	}
	var labels []labelQuery
	for _, v := range d.Templating.List {
		q, ok := v.Query.(string)
		if v.Type != "query" || !ok {
			continue
		}
		m := labelValuesCall.FindStringSubmatch(q)
		if m == nil {
			return nil, nil, fmt.Errorf("variable %s: unsupported query %q", v.Name, q)
		}
		labels = append(labels, labelQuery{v.Name, m[1], m[2]})
	}
	if len(checks) == 0 {
		return nil, nil, fmt.Errorf("%s: no panel queries", file)
	}
	return checks, labels, nil
}

// ruleChecks returns the expression of every alerting rule.
func ruleChecks(file string) ([]check, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var rf struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rf); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	var checks []check
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				checks = append(checks, check{"alert " + r.Alert, r.Expr})
			}
		}
	}
	if len(checks) == 0 {
		return nil, fmt.Errorf("%s: no alerting rules", file)
	}
	return checks, nil
}
