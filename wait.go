package retryhttp

import (
	"context"
	"errors"
	"time"
)

// sleep waits d, or until ctx ends. It returns ctx.Err(), joined with the
// context's cause when that differs, so errors.Is(err, context.Canceled)
// holds either way.
func sleep(ctx context.Context, d time.Duration) error {
	if d > 0 {
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
			return nil
		case <-ctx.Done():
		}
	} else if ctx.Err() == nil {
		return nil
	}
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		err = errors.Join(err, cause)
	}
	return err
}
