//go:build race

package authz

// raceEnabled: the race detector slows the churn tests tenfold.
const raceEnabled = true
