package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Proxy is a toxiproxy TCP proxy, run in this process, between the stack
// and one of its services (PostgreSQL or S3). Faults are toxiproxy's
// toxics, added and removed through its Go API (no toxiproxy server or
// HTTP API is started).
type Proxy struct {
	Name string
	tp   *toxiproxy.Proxy
	mu   sync.Mutex // serializes Inject's undo with the next fault
}

// StartProxy listens on a free port of 127.0.0.1 and forwards each
// connection to upstream (host:port).
func StartProxy(name, upstream string) (*Proxy, error) {
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	tp := toxiproxy.NewProxy(srv, name, "127.0.0.1:0", upstream)
	if err := tp.Start(); err != nil {
		return nil, fmt.Errorf("proxy %s → %s: %w", name, upstream, err)
	}
	return &Proxy{Name: name, tp: tp}, nil
}

// Addr is where the proxy listens (host:port); a restart keeps it.
func (p *Proxy) Addr() string {
	p.tp.Lock()
	defer p.tp.Unlock()
	return p.tp.Listen
}

// Close stops the proxy and closes its connections.
func (p *Proxy) Close() { p.tp.Stop() }

// Kind is a kind of fault.
type Kind string

const (
	// Latency delays every chunk both ways by 300 ms ± 100 ms.
	Latency Kind = "latency"
	// Reset resets (TCP RST) every connection as soon as the client sends
	// on it, new ones included.
	Reset Kind = "reset_peer"
	// Freeze lets nothing through either way, and closes each connection
	// once it has been frozen for the whole window: a peer that stops
	// answering, whose connections finally break. Connections opened
	// during the freeze are frozen too.
	Freeze Kind = "freeze"
	// Restart stops the proxy (every open connection is closed, new ones
	// are refused) and starts it again on the same port at the window's
	// end: the service going down and coming back.
	Restart Kind = "restart"
)

// Kinds lists every kind of fault, in the order a plan injects them.
var Kinds = []Kind{Latency, Reset, Freeze, Restart}

// Inject starts fault kind, meant to last window, and returns what ends
// it. Freeze needs the window: its connections are closed at its end.
func (p *Proxy) Inject(kind Kind, window time.Duration) (undo func() error, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch kind {
	case Latency:
		return p.toxics(
			toxic{Name: "latency-down", Type: "latency", Stream: "downstream", Attributes: map[string]int64{"latency": 300, "jitter": 100}},
			toxic{Name: "latency-up", Type: "latency", Stream: "upstream", Attributes: map[string]int64{"latency": 300, "jitter": 100}},
		)
	case Reset:
		return p.toxics(toxic{Name: "reset", Type: "reset_peer", Stream: "upstream", Attributes: map[string]int64{"timeout": 0}})
	case Freeze:
		// Both ways: with the answers alone dropped, a server that closes
		// its side after answering (versitygw does) would end the freeze
		// at once, the close passing through.
		ms := window.Milliseconds()
		return p.toxics(
			toxic{Name: "freeze-down", Type: "timeout", Stream: "downstream", Attributes: map[string]int64{"timeout": ms}},
			toxic{Name: "freeze-up", Type: "timeout", Stream: "upstream", Attributes: map[string]int64{"timeout": ms}},
		)
	case Restart:
		p.tp.Stop()
		return func() error {
			p.mu.Lock()
			defer p.mu.Unlock()
			return p.tp.Start()
		}, nil
	}
	return nil, fmt.Errorf("unknown fault %q", kind)
}

// toxic is toxiproxy's JSON form of a toxic.
type toxic struct {
	Name       string           `json:"name"`
	Type       string           `json:"type"`
	Stream     string           `json:"stream"`
	Toxicity   float32          `json:"toxicity"`
	Attributes map[string]int64 `json:"attributes"`
}

// toxics adds ts to every connection, open or new, and returns what
// removes them.
func (p *Proxy) toxics(ts ...toxic) (func() error, error) {
	var added []string
	remove := func() error {
		var errs []string
		for _, name := range added {
			if err := p.tp.Toxics.RemoveToxic(context.Background(), name); err != nil {
				errs = append(errs, name+": "+err.Error())
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("remove toxics of %s: %s", p.Name, strings.Join(errs, "; "))
		}
		return nil
	}
	for _, t := range ts {
		t.Toxicity = 1
		b, err := json.Marshal(t)
		if err != nil {
			return nil, err
		}
		if _, err := p.tp.Toxics.AddToxicJson(strings.NewReader(string(b))); err != nil {
			_ = remove()
			return nil, fmt.Errorf("add toxic %s to %s: %w", t.Name, p.Name, err)
		}
		added = append(added, t.Name)
	}
	return func() error {
		p.mu.Lock()
		defer p.mu.Unlock()
		return remove()
	}, nil
}
