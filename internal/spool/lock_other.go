//go:build !unix

package spool

import "os"

// lockFile does nothing where flock is missing: keep one keygate per data
// folder there.
func lockFile(*os.File) error { return nil }

func unlockFile(*os.File) error { return nil }
