package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Reading a spool back: checking what an earlier run left, and handing
// its records to the reader in order.

// load finds the segments of an earlier run and checks each.
func (s *Spool) load() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, segmentExt) {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, segmentExt), 16, 64)
		if err != nil {
			continue
		}
		seg := &segment{seq: seq, path: filepath.Join(s.dir, name)}
		size, err := s.scan(seg)
		if err != nil {
			return err
		}
		if seg.records == 0 {
			if err := os.Remove(seg.path); err != nil {
				return fmt.Errorf("spool: %w", err)
			}
			continue
		}
		seg.bytes = size
		s.segs = append(s.segs, seg)
		s.size += size
		s.count += seg.records
	}
	slices.SortFunc(s.segs, func(a, b *segment) int { return cmpSeq(a.seq, b.seq) })
	return nil
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// scan reads a segment through, counting its valid records and cutting it
// at the first that is not; it returns the file's size.
func (s *Spool) scan(seg *segment) (int64, error) {
	f, err := os.Open(seg.path)
	if err != nil {
		return 0, fmt.Errorf("spool: %w", err)
	}
	defer func() { _ = f.Close() }() // read only
	info, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("spool: %w", err)
	}
	head := make([]byte, len(magic))
	if _, err := io.ReadFull(f, head); err != nil || string(head) != magic {
		s.reportCorrupt(seg, 0, info.Size(), "not a spool segment")
		return info.Size(), nil
	}
	seg.read, seg.end = int64(len(magic)), int64(len(magic))
	for seg.end < info.Size() {
		n, err := readRecord(f, seg.end, info.Size(), nil)
		if err != nil {
			s.reportCorrupt(seg, seg.end, info.Size()-seg.end, err.Error())
			break
		}
		seg.end += n
		seg.records++
	}
	return info.Size(), nil
}

// readRecord reads the record at off (the file being limit bytes long)
// into buf when it is non-nil; it returns the record's size on disk and
// the payload.
func readRecord(f *os.File, off, limit int64, buf *[]byte) (int64, error) {
	if limit-off < headerSize {
		return 0, errors.New("a record is cut short")
	}
	var h [headerSize]byte
	if _, err := f.ReadAt(h[:], off); err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	n := int64(binary.BigEndian.Uint32(h[:4]))
	if n > MaxRecord || limit-off-headerSize < n {
		return 0, errors.New("a record is cut short or its length is corrupt")
	}
	payload := make([]byte, n)
	if _, err := f.ReadAt(payload, off+headerSize); err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(h[4:]) {
		return 0, errors.New("a record fails its checksum")
	}
	if buf != nil {
		*buf = payload
	}
	return headerSize + n, nil
}

func (s *Spool) reportCorrupt(seg *segment, off, skipped int64, why string) {
	s.corrupt.Add(1)
	s.opts.Logger.Warn("audit spool: corrupt data skipped", "segment", filepath.Base(seg.path),
		"offset", off, "bytes_skipped", skipped, "why", why)
}

// Peek returns up to n records from the head without removing them; Advance
// removes them once they are safe elsewhere. It reads from one segment at a
// time, so it may return fewer than n while more are spooled.
func (s *Spool) Peek(n int) ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peeked = s.peeked[:0]
	for len(s.segs) > 0 {
		head := s.segs[0]
		if head.records > 0 {
			break
		}
		if head.w != nil { // the tail, read to its end: it goes when it is emptied
			return nil, nil
		}
		if err := s.removeHead(); err != nil {
			return nil, err
		}
	}
	if len(s.segs) == 0 {
		return nil, nil
	}
	head := s.segs[0]
	if head.r == nil {
		f, err := os.Open(head.path)
		if err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		head.r = f
	}
	var out [][]byte
	off := head.read
	for len(out) < n && off < head.end {
		var payload []byte
		size, err := readRecord(head.r, off, head.end, &payload)
		if err != nil {
			// What this run wrote was whole; only the disk can have
			// changed it. Skip the rest of the segment.
			s.reportCorrupt(head, off, head.end-off, err.Error())
			s.dropUnread(head, off)
			break
		}
		off += size
		out = append(out, payload)
		s.peeked = append(s.peeked, off)
	}
	return out, nil
}

// dropUnread forgets the records of head from off on.
func (s *Spool) dropUnread(head *segment, off int64) {
	read := len(s.peeked)
	s.count -= head.records - read
	head.records = read
	head.end = off
	s.closeWriter(head)
}

// Advance removes the first n records the last Peek returned, and with
// them any segment that is now read to its end.
func (s *Spool) Advance(n int) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 {
		return nil
	}
	if n > len(s.peeked) || len(s.segs) == 0 {
		return errors.New("spool: advance past what was peeked")
	}
	head := s.segs[0]
	head.read = s.peeked[n-1]
	head.records -= n
	s.count -= n
	s.peeked = s.peeked[n:]
	if head.records == 0 {
		s.peeked = nil
		return s.removeHead()
	}
	return nil
}

// removeHead deletes the head segment; the caller holds mu (and syncMu,
// or knows no sync can hold the head's file).
func (s *Spool) removeHead() error {
	head := s.segs[0]
	s.closeWriter(head)
	if head.r != nil {
		_ = head.r.Close()
		head.r = nil
	}
	s.segs = s.segs[1:]
	s.size -= head.bytes
	if err := os.Remove(head.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}
