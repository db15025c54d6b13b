//go:build race

package retryhttpotel

const raceEnabled = true
