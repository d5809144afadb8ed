package app

import (
	"context"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// policyWatchQuiet is how long a policy folder must be left alone after a
// change before it is read: an editor's save or a `cp -r` is a burst of
// events, read once when it is over.
const policyWatchQuiet = 100 * time.Millisecond

// watchPolicyDir starts watching the policy folder and returns the loop
// that reloads it after each burst of changes to its policy files, until
// ctx ends. It watches every folder of the tree (fsnotify is not
// recursive), and picks up new ones after each reload; a Kubernetes
// ConfigMap's swap of its ..data link shows as a change in the folder
// itself. The watch is in place when it returns, so no change made after
// Start is missed.
func (m *policyManager) watchPolicyDir() (func(ctx context.Context), error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := watchTree(w, m.dir); err != nil {
		_ = w.Close()
		return nil, err
	}
	return func(ctx context.Context) {
		defer func() { _ = w.Close() }()
		timer := time.NewTimer(policyWatchQuiet)
		timer.Stop()
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if policyEvent(ev) {
					timer.Reset(policyWatchQuiet)
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				// An overflow loses events: read the folder to be sure.
				m.logger.Warn("watching the policy folder", "dir", m.dir, "err", err)
				timer.Reset(policyWatchQuiet)
			case <-timer.C:
				_ = m.Reload(ctx)
				if err := watchTree(w, m.dir); err != nil {
					m.logger.Warn("watching the policy folder", "dir", m.dir, "err", err)
				}
			}
		}
	}, nil
}

// policyEvent reports whether an event may change the policy: a Rego or
// data file, a manifest, a folder or a ConfigMap's ..data; not a chmod, nor
// an editor's swap or backup file.
func policyEvent(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	base := filepath.Base(ev.Name)
	if strings.HasPrefix(base, "..") {
		return true
	}
	if strings.HasPrefix(base, ".") && base != ".manifest" {
		return false
	}
	switch filepath.Ext(base) {
	case ".rego", ".json", ".yaml", ".yml", ".manifest":
		return true
	case "":
		// A folder made, moved or removed.
		return !strings.HasSuffix(base, "~") && base != "4913"
	}
	return false
}

// watchTree adds dir and every folder below it, dot folders left out, to
// w; folders already watched are left as they are.
func watchTree(w *fsnotify.Watcher, dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == dir {
				return err
			}
			return nil
		}
		if !d.IsDir() {
			return nil
		}
		if path != dir && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		return w.Add(path)
	})
}
