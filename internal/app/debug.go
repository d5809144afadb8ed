package app

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"
)

// debugOptions are the profiler listener's settings.
type debugOptions struct {
	Addr string // "": off
	// MutexFraction and BlockRate turn on the contention profiles
	// (/debug/pprof/mutex and /debug/pprof/block), which Go keeps off
	// because recording them costs every contended lock and every wait a
	// little: 1 in MutexFraction contention events is recorded, and about
	// one blocking event per BlockRate spent blocked. 0: off.
	MutexFraction int
	BlockRate     time.Duration
}

// startDebug serves Go's profiler on its own listener, never on the public
// one: profiles show memory contents and cost CPU to take. It stops when
// ctx ends, turning the contention profiles off again, and returns the
// address it listens on ("" when Addr is empty: off).
func startDebug(ctx context.Context, opts debugOptions, logger *slog.Logger) (string, error) {
	if opts.Addr == "" {
		return "", nil
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", opts.Addr)
	if err != nil {
		return "", err
	}
	// The rates are the process's: set while the listener is up, the
	// only reader of the profiles they feed.
	if opts.MutexFraction > 0 {
		runtime.SetMutexProfileFraction(opts.MutexFraction)
	}
	if opts.BlockRate > 0 {
		runtime.SetBlockProfileRate(int(opts.BlockRate.Nanoseconds()))
	}
	mux := http.NewServeMux()
	// No pprof.Cmdline: the command line may carry a secret (--jwt-secret),
	// and Index answers /debug/pprof/cmdline with 404.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
		if opts.MutexFraction > 0 {
			runtime.SetMutexProfileFraction(0)
		}
		if opts.BlockRate > 0 {
			runtime.SetBlockProfileRate(0)
		}
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("debug listener stopped", "err", err)
		}
	}()
	logger.Info("profiler listening", "addr", "http://"+ln.Addr().String()+"/debug/pprof/",
		"mutex_fraction", opts.MutexFraction, "block_rate", opts.BlockRate)
	return ln.Addr().String(), nil
}
