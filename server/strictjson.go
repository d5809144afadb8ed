package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/keygate/keygate/authz"
)

// Strict JSON. encoding/json matches member names without regard to case
// ({"API_KEY": …} fills api_key, and with both "id" and "ID" the last one
// wins), keeps the last of duplicate members, and turns invalid UTF-8 into
// U+FFFD, which a glob then matches. Every body keygate reads is scanned
// first, once, without allocating: a duplicate member is refused (400),
// invalid UTF-8 and lone surrogate escapes are refused naming the field
// (422). Member names are then matched exactly: the scan reports whether
// every name is plain lowercase ASCII, which encoding/json can only match to
// keygate's lowercase tags exactly; a body with any other name takes the
// slow path, which compares names exactly (decodeField).

// maxJSONDepth bounds nesting; keygate's bodies nest four levels at most.
const maxJSONDepth = 32

// jsonScan is the outcome of scanJSON.
type jsonScan struct {
	plainNames bool // every member name is [a-z0-9_]+
}

// The scanner keeps what it needs in fixed arrays inside itself, as offsets
// into data, so a scan allocates nothing (a store through a pointer would
// send a slice to the heap).
type scanner struct {
	data  []byte
	pos   int
	plain bool
	depth int
	path  [maxJSONDepth + 1]span // where the scan is, for error messages
	names nameStack              // member names of the objects being scanned
}

// span is a member name's raw bytes data[start:end] (escaped: it holds
// escapes), or, in a path, an array index when end is -1.
type span struct {
	start, end int32
	escaped    bool
}

type nameStack struct {
	inline [32]span
	more   []span // past 32 names in all open objects
	n      int
}

func (st *nameStack) push(sp span) {
	if st.n < len(st.inline) {
		st.inline[st.n] = sp
	} else {
		st.more = append(st.more, sp)
	}
	st.n++
}

func (st *nameStack) at(i int) span {
	if i < len(st.inline) {
		return st.inline[i]
	}
	return st.more[i-len(st.inline)]
}

func (st *nameStack) truncate(n int) {
	st.n = n
	if extra := n - len(st.inline); extra >= 0 {
		st.more = st.more[:extra]
	} else {
		st.more = st.more[:0]
	}
}

func (s *scanner) bytes(sp span) []byte { return s.data[sp.start:sp.end] }

// name returns a member name with its escapes decoded.
func (s *scanner) name(sp span) []byte {
	if sp.escaped {
		return decodeName(s.bytes(sp))
	}
	return s.bytes(sp)
}

func (s *scanner) sameName(a, b span) bool {
	if !a.escaped && !b.escaped {
		return bytes.Equal(s.bytes(a), s.bytes(b))
	}
	return bytes.Equal(s.name(a), s.name(b))
}

// scanJSON checks that data is one JSON value (surrounding space allowed)
// with no duplicate member in any object and valid UTF-8 in every string.
// A duplicate or a syntax error is EMALFORMED; bad UTF-8 is EINVALID naming
// the field.
func scanJSON(data []byte) (jsonScan, error) {
	if len(data) > math.MaxInt32 {
		return jsonScan{}, authz.Errorf(authz.ETOOLARGE, "the request body is too large")
	}
	s := scanner{data: data, plain: true}
	s.space()
	if err := s.value(); err != nil {
		return jsonScan{}, err
	}
	s.space()
	if s.pos != len(s.data) {
		return jsonScan{}, s.syntax()
	}
	return jsonScan{plainNames: s.plain}, nil
}

func (s *scanner) syntax() error {
	return authz.Errorf(authz.EMALFORMED, "the request body is not valid JSON")
}

func (s *scanner) space() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func (s *scanner) value() error {
	if s.pos >= len(s.data) {
		return s.syntax()
	}
	switch c := s.data[s.pos]; {
	case c == '{':
		return s.object()
	case c == '[':
		return s.array()
	case c == '"':
		_, _, err := s.str()
		return err
	case c == '-' || '0' <= c && c <= '9':
		return s.number()
	default:
		for _, lit := range [...]string{"true", "false", "null"} {
			if end := s.pos + len(lit); end <= len(s.data) && string(s.data[s.pos:end]) == lit {
				s.pos = end
				return nil
			}
		}
		return s.syntax()
	}
}

func (s *scanner) enter() error {
	if s.depth >= maxJSONDepth {
		return authz.Errorf(authz.EMALFORMED, "the request body nests deeper than %d levels", maxJSONDepth)
	}
	s.depth++
	return nil
}

func (s *scanner) object() error {
	if err := s.enter(); err != nil {
		return err
	}
	defer func() { s.depth-- }()
	s.pos++ // {
	first := s.names.n
	defer s.names.truncate(first)
	var set map[string]struct{} // for a large object
	s.space()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return nil
	}
	for {
		s.space()
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			return s.syntax()
		}
		start := s.pos + 1
		_, escaped, err := s.str()
		if err != nil {
			return err
		}
		sp := span{start: int32(start), end: int32(s.pos - 1), escaped: escaped}
		if !plainName(s.bytes(sp)) {
			s.plain = false
		}
		dup := false
		if count := s.names.n - first; set == nil && count >= 32 {
			set = make(map[string]struct{}, 2*count)
			for i := first; i < s.names.n; i++ {
				set[string(s.name(s.names.at(i)))] = struct{}{}
			}
		}
		if set != nil {
			name := string(s.name(sp))
			_, dup = set[name]
			set[name] = struct{}{}
		} else {
			for i := first; i < s.names.n; i++ {
				if s.sameName(s.names.at(i), sp) {
					dup = true
					break
				}
			}
		}
		s.path[s.depth] = sp
		if dup {
			return authz.Errorf(authz.EMALFORMED, "the request body has member %s twice", s.pathString(s.depth))
		}
		s.names.push(sp)
		s.space()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return s.syntax()
		}
		s.pos++
		if done, err := s.member('}'); done || err != nil {
			return err
		}
	}
}

// member scans a value of an object or array and what follows it: a comma
// (more members follow) or the closing bracket (done).
func (s *scanner) member(closing byte) (bool, error) {
	s.space()
	if err := s.value(); err != nil {
		return false, err
	}
	s.space()
	switch s.peek() {
	case ',':
		s.pos++
		return false, nil
	case closing:
		s.pos++
		return true, nil
	}
	return false, s.syntax()
}

func (s *scanner) array() error {
	if err := s.enter(); err != nil {
		return err
	}
	defer func() { s.depth-- }()
	s.pos++ // [
	s.space()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		return nil
	}
	for i := 0; ; i++ {
		s.path[s.depth] = span{start: int32(i), end: -1}
		if done, err := s.member(']'); done || err != nil {
			return err
		}
	}
}

// str scans a string and returns its raw content and whether it holds
// escapes. Raw bytes must be valid UTF-8 and \u escapes pair their
// surrogates.
func (s *scanner) str() ([]byte, bool, error) {
	s.pos++ // "
	start, escaped := s.pos, false
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			raw := s.data[start:s.pos]
			s.pos++
			return raw, escaped, nil
		case c == '\\':
			escaped = true
			if err := s.escape(); err != nil {
				return nil, false, err
			}
		case c < 0x20:
			return nil, false, s.syntax()
		case c < utf8.RuneSelf:
			s.pos++
		default:
			r, size := utf8.DecodeRune(s.data[s.pos:])
			if r == utf8.RuneError && size <= 1 {
				return nil, false, s.badUTF8()
			}
			s.pos += size
		}
	}
	return nil, false, s.syntax()
}

func (s *scanner) escape() error {
	if s.pos+1 >= len(s.data) {
		return s.syntax()
	}
	switch s.data[s.pos+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		s.pos += 2
		return nil
	case 'u':
		r, ok := s.hex4(s.pos + 2)
		if !ok {
			return s.syntax()
		}
		s.pos += 6
		if utf16.IsSurrogate(r) {
			// A high surrogate must be followed by a low one.
			if r >= 0xDC00 || s.pos+1 >= len(s.data) || s.data[s.pos] != '\\' || s.data[s.pos+1] != 'u' {
				return s.badUTF8()
			}
			r2, ok := s.hex4(s.pos + 2)
			if !ok || r2 < 0xDC00 || r2 > 0xDFFF {
				return s.badUTF8()
			}
			s.pos += 6
		}
		return nil
	}
	return s.syntax()
}

func (s *scanner) hex4(at int) (rune, bool) {
	if at+4 > len(s.data) {
		return 0, false
	}
	var r rune
	for _, c := range s.data[at : at+4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

func (s *scanner) badUTF8() error {
	field := s.pathString(s.depth)
	if field == "" {
		field = "body"
	}
	return authz.Invalid(authz.FieldError{Field: field, Message: "must be valid UTF-8 (no invalid bytes or lone surrogate escapes)"})
}

// number scans a JSON number: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
func (s *scanner) number() error {
	if s.peek() == '-' {
		s.pos++
	}
	switch c := s.peek(); {
	case c == '0':
		s.pos++
	case '1' <= c && c <= '9':
		s.digits()
	default:
		return s.syntax()
	}
	if s.peek() == '.' {
		s.pos++
		if s.digits() == 0 {
			return s.syntax()
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.pos++
		if c := s.peek(); c == '+' || c == '-' {
			s.pos++
		}
		if s.digits() == 0 {
			return s.syntax()
		}
	}
	return nil
}

func (s *scanner) peek() byte {
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0
}

func (s *scanner) digits() int {
	n := 0
	for s.pos < len(s.data) && '0' <= s.data[s.pos] && s.data[s.pos] <= '9' {
		s.pos++
		n++
	}
	return n
}

// pathString names the value at depth as keygate names fields:
// "checks[2].resource.id". Names are quoted when not plain.
func (s *scanner) pathString(depth int) string {
	var b []byte
	for i := 1; i <= depth; i++ {
		step := s.path[i]
		if step.end < 0 {
			b = append(b, fmt.Sprintf("[%d]", step.start)...)
			continue
		}
		if len(b) > 0 {
			b = append(b, '.')
		}
		if name := s.name(step); plainName(name) {
			b = append(b, name...)
		} else {
			b = append(b, strconv.Quote(authz.Truncate(string(name), 64))...)
		}
	}
	return string(b)
}

// decodeName decodes the escapes of a member name; the scan has checked
// them, so it cannot fail.
func decodeName(raw []byte) []byte {
	var v string
	quoted := make([]byte, 0, len(raw)+2)
	quoted = append(append(append(quoted, '"'), raw...), '"')
	if err := json.Unmarshal(quoted, &v); err != nil {
		return raw
	}
	return []byte(v)
}

func isLowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

func plainName(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if isLowerAlnum(c) || c == '_' {
			continue
		}
		return false
	}
	return true
}
