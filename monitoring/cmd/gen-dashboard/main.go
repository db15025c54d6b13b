// Command gen-dashboard prints the retryhttp Grafana dashboard as JSON:
//
//	go run ./cmd/gen-dashboard > grafana/retryhttp.json
package main

import (
	"fmt"
	"os"

	"github.com/retryhttp/retryhttp/monitoring"
)

func main() {
	b, err := monitoring.JSON()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen-dashboard:", err)
		os.Exit(1)
	}
	if _, err := os.Stdout.Write(b); err != nil {
		fmt.Fprintln(os.Stderr, "gen-dashboard:", err)
		os.Exit(1)
	}
}
