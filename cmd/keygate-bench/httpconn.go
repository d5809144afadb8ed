package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"time"
)

// httpConn is one keep-alive HTTP/1.1 connection that sends prepared
// requests and reads their answers: the least client work per request, so
// the load generator takes as little as it can of the cores it shares with
// the server it measures. It speaks only what the servers under test
// answer: a status line, headers, and a body sized by Content-Length or
// chunked.
type httpConn struct {
	addr    string
	timeout time.Duration
	conn    net.Conn
	r       *bufio.Reader
	line    []byte
}

// preparedRequests encodes a POST of each body to rawURL, once, up front.
func preparedRequests(rawURL string, bodies [][]byte) (addr string, reqs [][]byte, err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", nil, err
	}
	if u.Scheme != "http" {
		return "", nil, fmt.Errorf("%s: only http:// is supported", rawURL)
	}
	reqs = make([][]byte, len(bodies))
	for i, body := range bodies {
		head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
			u.RequestURI(), u.Host, len(body))
		reqs[i] = append([]byte(head), body...)
	}
	return u.Host, reqs, nil
}

// do sends req and reads the answer's body into buf; on any error the
// connection is closed and the next call dials a new one.
func (c *httpConn) do(ctx context.Context, req []byte, buf *bytes.Buffer) (status int, err error) {
	if c.conn == nil {
		d := net.Dialer{Timeout: c.timeout}
		if c.conn, err = d.DialContext(ctx, "tcp", c.addr); err != nil {
			return 0, err
		}
		if c.r == nil {
			c.r = bufio.NewReaderSize(c.conn, 16<<10)
		} else {
			c.r.Reset(c.conn)
		}
	}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	if err := c.conn.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	if _, err := c.conn.Write(req); err != nil {
		return 0, err
	}
	buf.Reset()
	status, keepAlive, err := c.readResponse(buf)
	if err == nil && !keepAlive {
		c.close()
	}
	return status, err
}

func (c *httpConn) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}

// readLine returns the next line without its CRLF; it is valid until the
// next read.
func (c *httpConn) readLine() ([]byte, error) {
	c.line = c.line[:0]
	for {
		part, err := c.r.ReadSlice('\n')
		c.line = append(c.line, part...)
		if err == nil {
			return bytes.TrimRight(c.line, "\r\n"), nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

func (c *httpConn) readResponse(buf *bytes.Buffer) (status int, keepAlive bool, err error) {
	line, err := c.readLine()
	if err != nil {
		return 0, false, err
	}
	// HTTP/1.1 200 OK
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	if status, err = strconv.Atoi(string(line[9:12])); err != nil {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	keepAlive = line[7] == '1'
	length, chunked := -1, false
	for {
		line, err := c.readLine()
		if err != nil {
			return 0, false, err
		}
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, false, fmt.Errorf("bad header line %q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "Content-Length"):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return 0, false, fmt.Errorf("bad Content-Length %q", value)
			}
		case asciiEqualFold(name, "Transfer-Encoding"):
			chunked = asciiEqualFold(value, "chunked")
		case asciiEqualFold(name, "Connection"):
			if asciiEqualFold(value, "close") {
				keepAlive = false
			}
		}
	}
	switch {
	case chunked:
		err = c.readChunked(buf)
	case length >= 0:
		_, err = io.CopyN(buf, c.r, int64(length))
	default:
		return 0, false, errors.New("answer without Content-Length or chunked encoding")
	}
	return status, keepAlive, err
}

func (c *httpConn) readChunked(buf *bytes.Buffer) error {
	for {
		line, err := c.readLine()
		if err != nil {
			return err
		}
		size, _, _ := bytes.Cut(line, []byte(";"))
		n, err := strconv.ParseUint(string(bytes.TrimSpace(size)), 16, 32)
		if err != nil {
			return fmt.Errorf("bad chunk size %q", line)
		}
		if n == 0 {
			for { // trailers, up to the blank line
				line, err := c.readLine()
				if err != nil || len(line) == 0 {
					return err
				}
			}
		}
		if _, err := io.CopyN(buf, c.r, int64(n)); err != nil {
			return err
		}
		if line, err := c.readLine(); err != nil || len(line) != 0 {
			return errors.Join(err, errors.New("chunk not followed by CRLF"))
		}
	}
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(s) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
