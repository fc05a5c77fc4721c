// Command yamux-peer is the Go reference peer for spokelink's yamux interop
// test (test/e2e/mux-interop.test.ts). It dials the test's TCP listener, runs
// github.com/hashicorp/yamux as -role client|server on that connection and
// plays one fixed -scenario. It reports what it saw as JSON lines on stdout
// ({"event": ...}) and waits for the test at sync points by reading one line
// per step from stdin. Any failure prints {"event":"error"} and exits 1.
//
// -opener go|node says which side opens the scenario's stream(s); the rest of
// a scenario is the same either way, so every scenario runs in both directions.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

var (
	out   = json.NewEncoder(os.Stdout)
	outMu sync.Mutex
	stdin = bufio.NewScanner(os.Stdin)
)

func emit(event string, fields map[string]any) {
	if fields == nil {
		fields = map[string]any{}
	}
	fields["event"] = event
	outMu.Lock()
	defer outMu.Unlock()
	if err := out.Encode(fields); err != nil {
		os.Exit(3)
	}
}

func fail(format string, args ...any) {
	emit("error", map[string]any{"error": fmt.Sprintf(format, args...)})
	os.Exit(1)
}

// waitLine blocks until the test writes the line `want` on stdin.
func waitLine(want string) {
	if !stdin.Scan() {
		fail("stdin closed while waiting for %q", want)
	}
	if got := stdin.Text(); got != want {
		fail("stdin: expected %q, got %q", want, got)
	}
}

type peer struct {
	session *yamux.Session
	opener  string
}

// stream opens (opener go) or accepts (opener node) one stream.
func (p *peer) stream() *yamux.Stream {
	var (
		s   *yamux.Stream
		err error
	)
	if p.opener == "go" {
		s, err = p.session.OpenStream()
	} else {
		s, err = p.session.AcceptStream()
	}
	if err != nil {
		fail("%s stream: %v", p.opener, err)
	}
	return s
}

// hashingReader produces n pseudo-random bytes (splitmix64: fast, and no
// math/rand/v2, so Debian's older Go builds it too) and hashes them.
type hashingReader struct {
	state uint64
	left  int64
	sum   hashSum
}

func (r *hashingReader) next() uint64 {
	r.state += 0x9e3779b97f4a7c15
	z := r.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

type hashSum struct {
	h hash.Hash
	n int64
}

func newHashSum() hashSum { return hashSum{h: sha256.New()} }

func (h *hashSum) Write(b []byte) (int, error) {
	h.n += int64(len(b))
	return h.h.Write(b)
}

func (h *hashSum) hex() string { return hex.EncodeToString(h.h.Sum(nil)) }

func (r *hashingReader) Read(b []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > r.left {
		b = b[:r.left]
	}
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.next())
	}
	if i < len(b) {
		var tail [8]byte
		binary.LittleEndian.PutUint64(tail[:], r.next())
		copy(b[i:], tail[:])
	}
	r.left -= int64(len(b))
	_, _ = r.sum.Write(b)
	return len(b), nil
}

func newRandom(n int64, seed byte) *hashingReader {
	return &hashingReader{state: uint64(seed)<<56 ^ uint64(time.Now().UnixNano()), left: n, sum: newHashSum()}
}

// sendAndReceive writes n random bytes then half-closes, while reading the
// peer's bytes to EOF; it returns both hashes.
func sendAndReceive(s *yamux.Stream, n int64, seed byte) (sent, recv hashSum, err error) {
	src := newRandom(n, seed)
	recv = newHashSum()
	var wg sync.WaitGroup
	var werr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 64*1024)
		if _, werr = io.CopyBuffer(onlyWriter{s}, src, buf); werr == nil {
			werr = s.Close() // FIN: half-close our direction
		}
	}()
	buf := make([]byte, 64*1024)
	_, rerr := io.CopyBuffer(&recv, onlyReader{s}, buf)
	wg.Wait()
	return src.sum, recv, errors.Join(werr, rerr)
}

// onlyWriter / onlyReader hide ReadFrom/WriteTo so io.CopyBuffer uses our buffer size.
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(b []byte) (int, error) { return o.w.Write(b) }

type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(b []byte) (int, error) { return o.r.Read(b) }

// waitNoStreams waits until the session has forgotten every stream (both FINs seen).
func (p *peer) waitNoStreams() int {
	deadline := time.Now().Add(10 * time.Second)
	for p.session.NumStreams() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return p.session.NumStreams()
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func main() {
	connect := flag.String("connect", "", "TCP address of the test's listener (127.0.0.1:PORT)")
	role := flag.String("role", "client", "yamux role of this peer: client (odd ids) or server (even ids)")
	scenario := flag.String("scenario", "", "scenario to play: echo, bulk, half-close, rst-from-node, rst-from-go, backlog-rst, ping, goaway-go, goaway-node")
	opener := flag.String("opener", "go", "which side opens the scenario's streams: go or node")
	streams := flag.Int("streams", 1, "echo: number of concurrent streams")
	bytes := flag.Int64("bytes", 1<<20, "bytes to send per stream and direction")
	closeTimeout := flag.Duration("stream-close-timeout", 5*time.Minute, "yamux StreamCloseTimeout (rst-from-go sets it short)")
	backlog := flag.Int("accept-backlog", 256, "yamux AcceptBacklog")
	flag.Parse()
	if *opener != "go" && *opener != "node" {
		fail("-opener must be go or node, got %q", *opener)
	}

	conn, err := net.Dial("tcp", *connect)
	if err != nil {
		fail("dial %s: %v", *connect, err)
	}
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = os.Stderr
	cfg.EnableKeepAlive = false
	cfg.StreamCloseTimeout = *closeTimeout
	cfg.AcceptBacklog = *backlog
	var session *yamux.Session
	switch *role {
	case "client":
		session, err = yamux.Client(conn, cfg)
	case "server":
		session, err = yamux.Server(conn, cfg)
	default:
		fail("-role must be client or server, got %q", *role)
	}
	if err != nil {
		fail("yamux %s: %v", *role, err)
	}
	p := &peer{session: session, opener: *opener}
	emit("ready", map[string]any{"role": *role, "scenario": *scenario, "opener": *opener})

	switch *scenario {
	case "echo":
		p.echo(*streams, *bytes)
	case "bulk":
		p.bulk(*bytes)
	case "half-close":
		p.halfClose(*bytes)
	case "rst-from-node":
		p.rstFromNode()
	case "rst-from-go":
		p.rstFromGo()
	case "backlog-rst":
		p.backlogRst()
	case "ping":
		p.ping()
	case "goaway-go":
		p.goAwayGo()
	case "goaway-node":
		p.goAwayNode()
	default:
		fail("unknown -scenario %q", *scenario)
	}

	// The test ends the session by closing the TCP connection; wait for it so
	// nothing of ours races the test's own assertions.
	waitLine("exit")
	_ = session.Close()
	emit("done", nil)
}

// echo: the opener sends `bytes` random bytes on each of `streams` streams and
// half-closes; the acceptor echoes every byte back and half-closes after EOF.
// The opener checks sha256(sent) == sha256(echoed).
func (p *peer) echo(streams int, n int64) {
	var wg sync.WaitGroup
	for i := 0; i < streams; i++ {
		wg.Add(1)
		s := p.stream()
		go func(i int, s *yamux.Stream) {
			defer wg.Done()
			if p.opener == "go" {
				sent, recv, err := sendAndReceive(s, n, byte(i))
				if err != nil {
					fail("echo stream %d: %v", s.StreamID(), err)
				}
				emit("echo-checked", map[string]any{"stream": s.StreamID(), "sentBytes": sent.n, "sent": sent.hex(), "recvBytes": recv.n, "recv": recv.hex()})
				return
			}
			sum := newHashSum()
			buf := make([]byte, 32*1024)
			if _, err := io.CopyBuffer(onlyWriter{io.MultiWriter(s, &sum)}, onlyReader{s}, buf); err != nil {
				fail("echo stream %d: %v", s.StreamID(), err)
			}
			if err := s.Close(); err != nil {
				fail("echo close %d: %v", s.StreamID(), err)
			}
			emit("echoed", map[string]any{"stream": s.StreamID(), "bytes": sum.n, "sha256": sum.hex()})
		}(i, s)
	}
	wg.Wait()
	emit("echo-done", map[string]any{"streams": streams, "openStreams": p.waitNoStreams()})
}

// bulk: one stream, both sides send `bytes` random bytes at once and half-close.
func (p *peer) bulk(n int64) {
	s := p.stream()
	start := time.Now()
	sent, recv, err := sendAndReceive(s, n, 42)
	if err != nil {
		fail("bulk: %v", err)
	}
	emit("bulk", map[string]any{
		"stream": s.StreamID(), "sentBytes": sent.n, "sent": sent.hex(), "recvBytes": recv.n, "recv": recv.hex(),
		"seconds": time.Since(start).Seconds(), "openStreams": p.waitNoStreams(),
	})
}

// halfClose: the opener writes "hello" and half-closes at once; the acceptor
// reads to EOF and only then writes `bytes` bytes back (more than one window,
// so window updates must flow to a half-closed sender) and half-closes.
func (p *peer) halfClose(n int64) {
	s := p.stream()
	if p.opener == "go" {
		if _, err := s.Write([]byte("hello from go")); err != nil {
			fail("write: %v", err)
		}
		if err := s.Close(); err != nil {
			fail("close: %v", err)
		}
		emit("fin-sent", nil)
		recv := newHashSum()
		if _, err := io.Copy(&recv, onlyReader{s}); err != nil {
			fail("read after local FIN: %v", err)
		}
		emit("half-close", map[string]any{"recvBytes": recv.n, "recv": recv.hex(), "openStreams": p.waitNoStreams()})
		return
	}
	got, err := io.ReadAll(onlyReader{s})
	if err != nil {
		fail("read to FIN: %v", err)
	}
	emit("fin-received", map[string]any{"text": string(got)})
	src := newRandom(n, 7)
	if _, err := io.Copy(onlyWriter{s}, src); err != nil {
		fail("write after remote FIN: %v", err)
	}
	if err := s.Close(); err != nil {
		fail("close: %v", err)
	}
	emit("half-close", map[string]any{"sentBytes": src.sum.n, "sent": src.sum.hex(), "text": string(got), "openStreams": p.waitNoStreams()})
}

// rstFromNode: the test resets the stream (destroy()) while we are blocked
// reading it; Read and Write must then fail with yamux.ErrConnectionReset.
func (p *peer) rstFromNode() {
	s := p.stream()
	if _, err := s.Write([]byte("ping")); err != nil {
		fail("write: %v", err)
	}
	buf := make([]byte, 1024)
	total := 0
	var rerr error
	for {
		n, err := s.Read(buf)
		total += n
		if err != nil {
			rerr = err
			break
		}
	}
	_, werr := s.Write([]byte("after reset"))
	emit("reset-seen", map[string]any{
		"readBytes": total, "readError": errString(rerr), "writeError": errString(werr),
		"isReset":     errors.Is(rerr, yamux.ErrConnectionReset) && errors.Is(werr, yamux.ErrConnectionReset),
		"openStreams": p.waitNoStreams(),
	})
}

// rstFromGo: hashicorp/yamux v0.1.x has no Stream.Reset; it sends RST when a
// locally closed stream is not closed by the peer within StreamCloseTimeout.
// We write, Close() (FIN) and wait; the test keeps its side open and must see
// the reset (run with a short -stream-close-timeout).
func (p *peer) rstFromGo() {
	s := p.stream()
	if _, err := s.Write([]byte("bye")); err != nil {
		fail("write: %v", err)
	}
	if err := s.Close(); err != nil {
		fail("close: %v", err)
	}
	emit("fin-sent", map[string]any{"stream": s.StreamID()})
	emit("rst-sent", map[string]any{"openStreams": p.waitNoStreams()})
}

// backlogRst: with -accept-backlog 1 and nobody accepting, the peer's second
// stream overflows the backlog and hashicorp answers its SYN with RST. After
// the test says "accept", the first stream is accepted and echoes one line.
func (p *peer) backlogRst() {
	if p.opener != "node" {
		fail("backlog-rst needs -opener node")
	}
	waitLine("accept")
	s := p.stream()
	line, err := bufio.NewReader(s).ReadString('\n')
	if err != nil {
		fail("read: %v", err)
	}
	if _, err := s.Write([]byte(line)); err != nil {
		fail("write: %v", err)
	}
	_ = s.Close()
	emit("accepted", map[string]any{"stream": s.StreamID(), "line": line, "openStreams": p.waitNoStreams()})
}

func (p *peer) ping() {
	var rtts []int64
	for i := 0; i < 3; i++ {
		rtt, err := p.session.Ping()
		if err != nil {
			fail("ping: %v", err)
		}
		rtts = append(rtts, rtt.Nanoseconds())
	}
	emit("pinged", map[string]any{"rttNs": rtts})
}

// goAwayGo: a stream is established, then we send GoAway(normal). A ping after
// it is a barrier: its pong means the peer has processed the GoAway. The stream
// opened before the GoAway must keep working afterwards.
func (p *peer) goAwayGo() {
	s := p.stream()
	if err := p.session.GoAway(); err != nil {
		fail("goaway: %v", err)
	}
	if _, err := p.session.Ping(); err != nil {
		fail("ping after goaway: %v", err)
	}
	emit("goaway-sent", nil)
	sent, recv, err := sendAndReceive(s, 100_000, 3)
	if err != nil {
		fail("stream after goaway: %v", err)
	}
	emit("stream-after-goaway", map[string]any{"sentBytes": sent.n, "sent": sent.hex(), "recvBytes": recv.n, "recv": recv.hex(), "openStreams": p.waitNoStreams()})
}

// goAwayNode: a stream is established, then the test sends GoAway and writes
// "goaway" on stdin. Our ping is answered after the GoAway (same byte stream),
// so after it Open must fail with ErrRemoteGoAway.
func (p *peer) goAwayNode() {
	s := p.stream()
	waitLine("goaway")
	if _, err := p.session.Ping(); err != nil {
		fail("ping: %v", err)
	}
	_, openErr := p.session.OpenStream()
	emit("open-after-goaway", map[string]any{"error": errString(openErr), "isRemoteGoAway": errors.Is(openErr, yamux.ErrRemoteGoAway)})
	sent, recv, err := sendAndReceive(s, 100_000, 4)
	if err != nil {
		fail("stream after goaway: %v", err)
	}
	emit("stream-after-goaway", map[string]any{"sentBytes": sent.n, "sent": sent.hex(), "recvBytes": recv.n, "recv": recv.hex(), "openStreams": p.waitNoStreams()})
}
