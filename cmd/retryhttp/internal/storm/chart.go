package storm

import "github.com/retryhttp/retryhttp/internal/fleet"

func chart(c *fleet.Config, runs []*fleet.Run) string { return "" }
