// Package spool keeps records on disk, in order and within a byte limit,
// for as long as the database cannot take them: a queue in segment files
// that is appended at its tail, read back from its head, and may be given
// older records at its head. It survives a restart and a SIGKILL; a machine
// crash loses at most what was appended since the last sync.
//
// On disk a spool is a folder holding a LOCK file (one process at a time)
// and segment files named by a hexadecimal sequence number, oldest first.
// A segment starts with an 8-byte magic and holds records, each
//
//	length  uint32, big-endian: the payload's size
//	crc     uint32, big-endian: CRC-32C (Castagnoli) of the payload
//	payload length bytes
//
// A record that is cut short or fails its checksum ends its segment: what
// follows is reported (logged and counted) and skipped, never guessed at.
package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

const (
	magic        = "KGSPOOL\x01"
	headerSize   = 8 // length and checksum before every payload
	segmentExt   = ".seg"
	firstSeq     = 1 << 32 // leaves room below for segments given at the head
	maxSegment   = 4 << 20
	minSegment   = 64 << 10
	defaultSync  = 100 * time.Millisecond
	lockFileName = "LOCK"
)

// MaxRecord is the largest payload a spool takes.
const MaxRecord = 1 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrFull is returned when a record would take the spool past its limit.
var ErrFull = errors.New("the spool is full")

// Options tunes a Spool; zero values take the defaults.
type Options struct {
	// MaxBytes bounds the segment files together, headers included.
	MaxBytes int64
	// SegmentBytes is the size past which appends start a new segment;
	// default MaxBytes/8, between 64 KiB and 4 MiB.
	SegmentBytes int64
	// SyncEvery is how often appended records are fsynced; 100ms.
	SyncEvery time.Duration
	Logger    *slog.Logger
}

// Spool is one spool folder, open. Append, Peek, Advance and Prepend may
// be called from different goroutines; Peek and Advance from one reader.
type Spool struct {
	dir  string
	opts Options
	lock *os.File

	syncMu sync.Mutex // one fsync pass at a time; held while a segment goes
	mu     sync.Mutex
	segs   []*segment // head first
	size   int64      // bytes on disk, every segment's header included
	count  int        // records not yet advanced past
	peeked []int64    // end offsets in the head segment of the last Peek's records
	dirty  bool       // appended since the last sync
	newDir bool       // a segment file was created since the last sync
	closed bool

	corrupt atomic.Int64
	stop    chan struct{}
	done    chan struct{}
}

// segment is one file. end is where its valid records end; records is how
// many of them lie between read and end.
type segment struct {
	seq     uint64
	path    string
	w       *os.File // append handle; only the tail written in this run
	r       *os.File // read handle, opened on first read
	read    int64
	end     int64
	bytes   int64 // counted in the spool's size
	records int
}

// Open opens (creating it, 0700) the spool folder dir, takes its lock and
// checks every segment left by an earlier run, reporting corrupt tails.
// It fails when another process holds the folder.
func Open(dir string, opts Options) (*Spool, error) {
	if opts.MaxBytes <= 0 {
		return nil, errors.New("spool: MaxBytes must be positive")
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = min(max(opts.MaxBytes/8, minSegment), maxSegment)
	}
	if opts.SyncEvery <= 0 {
		opts.SyncEvery = defaultSync
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockFileName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := lockFile(lock); err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("spool %s is in use by another process: %w", dir, err)
	}
	s := &Spool{dir: dir, opts: opts, lock: lock, stop: make(chan struct{}), done: make(chan struct{})}
	if err := s.load(); err != nil {
		s.closeFiles()
		return nil, err
	}
	go s.syncLoop()
	return s, nil
}

func encode(dst, payload []byte) []byte {
	var h [headerSize]byte
	binary.BigEndian.PutUint32(h[:4], uint32(len(payload)))
	binary.BigEndian.PutUint32(h[4:], crc32.Checksum(payload, castagnoli))
	return append(append(dst, h[:]...), payload...)
}

// Append writes payload at the tail. The write reaches the file at once
// (a SIGKILL does not lose it) and the disk within SyncEvery. Returns
// ErrFull past MaxBytes.
func (s *Spool) Append(payload []byte) error {
	if len(payload) > MaxRecord {
		return fmt.Errorf("spool: a record of %d bytes is over the %d-byte limit", len(payload), MaxRecord)
	}
	rec := encode(nil, payload)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("spool: closed")
	}
	tail := s.tail()
	if tail == nil || tail.w == nil || tail.end+int64(len(rec)) > s.opts.SegmentBytes {
		if s.size+int64(len(magic)+len(rec)) > s.opts.MaxBytes {
			return ErrFull
		}
		var err error
		if tail, err = s.newSegment(s.nextSeq(), nil); err != nil {
			return err
		}
		s.segs = append(s.segs, tail)
	} else if s.size+int64(len(rec)) > s.opts.MaxBytes {
		return ErrFull
	}
	if _, err := tail.w.Write(rec); err != nil {
		// A part may have reached the file; nothing after it can be
		// trusted to line up, so the segment takes no more records.
		s.closeWriter(tail)
		return fmt.Errorf("spool: %w", err)
	}
	tail.end += int64(len(rec))
	tail.bytes += int64(len(rec))
	tail.records++
	s.size += int64(len(rec))
	s.count++
	s.dirty = true
	return nil
}

func (s *Spool) tail() *segment {
	if len(s.segs) == 0 {
		return nil
	}
	return s.segs[len(s.segs)-1]
}

func (s *Spool) nextSeq() uint64 {
	if t := s.tail(); t != nil {
		return t.seq + 1
	}
	return firstSeq
}

// newSegment creates segment seq holding the magic and records (already
// encoded), 0600, open for appending. The caller holds mu.
func (s *Spool) newSegment(seq uint64, records []byte) (*segment, error) {
	seg := &segment{seq: seq, path: filepath.Join(s.dir, fmt.Sprintf("%016x%s", seq, segmentExt))}
	f, err := os.OpenFile(seg.path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if _, err := f.Write(append([]byte(magic), records...)); err != nil {
		_ = f.Close()
		_ = os.Remove(seg.path)
		return nil, fmt.Errorf("spool: %w", err)
	}
	seg.w, seg.read, seg.end = f, int64(len(magic)), int64(len(magic)+len(records))
	seg.bytes = seg.end
	s.size += seg.bytes
	s.newDir, s.dirty = true, true
	return seg, nil
}

// Prepend puts payloads, older than everything spooled, at the head, in
// one new segment fsynced before it returns. It is all or nothing: ErrFull
// when they do not fit. It forgets the last Peek.
func (s *Spool) Prepend(payloads [][]byte) error {
	if len(payloads) == 0 {
		return nil
	}
	var buf []byte
	for _, p := range payloads {
		if len(p) > MaxRecord {
			return fmt.Errorf("spool: a record of %d bytes is over the %d-byte limit", len(p), MaxRecord)
		}
		buf = encode(buf, p)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("spool: closed")
	}
	if s.size+int64(len(magic)+len(buf)) > s.opts.MaxBytes {
		s.mu.Unlock()
		return ErrFull
	}
	seq := uint64(firstSeq)
	if len(s.segs) > 0 {
		seq = s.segs[0].seq - 1
	}
	seg, err := s.newSegment(seq, buf)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	seg.records = len(payloads)
	s.count += len(payloads)
	s.peeked = nil
	// Only the tail takes appends: the new head is written once, here.
	w := seg.w
	seg.w = nil
	s.segs = slices.Insert(s.segs, 0, seg)
	s.mu.Unlock()
	err = w.Sync()
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

func (s *Spool) closeWriter(seg *segment) {
	if seg.w != nil {
		_ = seg.w.Sync()
		_ = seg.w.Close()
		seg.w = nil
	}
}

// Len returns how many records are spooled.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Size returns the spool's bytes on disk.
func (s *Spool) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// Corrupt counts the corrupt parts found and skipped since Open.
func (s *Spool) Corrupt() int64 { return s.corrupt.Load() }

// Sync makes every record appended so far durable.
func (s *Spool) Sync() error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	var w *os.File
	if t := s.tail(); t != nil && s.dirty {
		w = t.w
	}
	newDir := s.newDir
	s.dirty, s.newDir = false, false
	s.mu.Unlock()
	var err error
	if w != nil {
		err = w.Sync()
	}
	if newDir && err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		s.mu.Lock()
		s.dirty, s.newDir = true, true
		s.mu.Unlock()
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }() // read only; Sync reported
	return d.Sync()
}

func (s *Spool) syncLoop() {
	defer close(s.done)
	t := time.NewTicker(s.opts.SyncEvery)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			err := s.Sync()
			if err != nil && !failing {
				s.opts.Logger.Error("audit spool: fsync failed; retrying", "dir", s.dir, "err", err)
			}
			failing = err != nil
		}
	}
}

// Close syncs what was appended and releases the folder.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	err := s.Sync()
	s.closeFiles()
	return err
}

func (s *Spool) closeFiles() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, seg := range s.segs {
		s.closeWriter(seg)
		if seg.r != nil {
			_ = seg.r.Close()
			seg.r = nil
		}
	}
	if s.lock != nil {
		_ = unlockFile(s.lock)
		_ = s.lock.Close()
		s.lock = nil
	}
}
