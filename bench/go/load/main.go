// Open-loop load generator for bench/plugin-hot-path.ts, as its own process.
// Requests leave on a fixed schedule whatever the server does, and each
// latency runs from the request's scheduled send time to the end of its
// answer, so a server that falls behind shows its queueing in the figures
// instead of slowing the generator down (no coordinated omission).
//
// The client is dockerd's plugin client: Go's net/http keep-alive
// http.Transport dialling the unix socket with compression off (moby
// pkg/plugins/client.go newTransport; docker/go-connections
// sockets.ConfigureTransport), every call a POST with Accept:
// application/vnd.docker.plugins.v1.2+json. One difference: dockerd's
// transport keeps at most 2 idle connections and opens a new one for each
// concurrent call beyond them; at thousands of calls per second that turns a
// latency blip into a storm of connects that overflows the socket's accept
// backlog and measures the kernel, not the plugin. Here the pool is
// -conns keep-alive connections, and a call waiting for a free one is still
// timed from its scheduled send.
//
// Mix: Get 60 %, Path 30 %, List 10 %, names spread over -volumes volumes.
// Output: one JSON line with per-endpoint latencies (ms) and the errors.
//
//	load -socket S -rate 2000 -seconds 10 -volumes 100 [-prefix v]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"
)

type result struct {
	endpoint string
	ms       float64
	err      string
}

func main() {
	socket := flag.String("socket", "", "plugin socket")
	rate := flag.Int("rate", 500, "requests per second")
	seconds := flag.Float64("seconds", 10, "duration")
	volumes := flag.Int("volumes", 100, "volumes named <prefix>0 … <prefix>N-1")
	prefix := flag.String("prefix", "v", "volume name prefix")
	conns := flag.Int("conns", 32, "keep-alive connections at most")
	flag.Parse()

	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", *socket)
	}}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	type call struct {
		endpoint string
		body     []byte
		check    func(map[string]json.RawMessage) string
	}
	has := func(field string) func(map[string]json.RawMessage) string {
		return func(m map[string]json.RawMessage) string {
			if _, ok := m[field]; !ok {
				return "answer has no " + field
			}
			return ""
		}
	}
	// A fixed, interleaved 10-call pattern (6 Get, 3 Path, 1 List) walked with a
	// stride over the names, so every name and endpoint recurs evenly.
	pattern := []string{"Get", "Path", "Get", "Get", "Path", "Get", "List", "Get", "Path", "Get"}
	total := int(float64(*rate) * *seconds)
	calls := make([]call, total)
	for i := range calls {
		ep := pattern[i%len(pattern)]
		name := fmt.Sprintf("%s%d", *prefix, (i*7)%*volumes)
		switch ep {
		case "Get":
			calls[i] = call{"/VolumeDriver.Get", []byte(`{"Name":"` + name + `"}`), has("Volume")}
		case "Path":
			calls[i] = call{"/VolumeDriver.Path", []byte(`{"Name":"` + name + `"}`), has("Mountpoint")}
		case "List":
			calls[i] = call{"/VolumeDriver.List", []byte(`{}`), has("Volumes")}
		}
	}

	results := make([]result, total)
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(*rate)
	start := time.Now().Add(20 * time.Millisecond)
	maxLate := time.Duration(0)
	for i := range calls {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		} else if -d > maxLate {
			maxLate = -d
		}
		wg.Add(1)
		go func(i int, due time.Time) {
			defer wg.Done()
			c := calls[i]
			r := result{endpoint: c.endpoint[len("/VolumeDriver."):]}
			req, _ := http.NewRequest("POST", "http://plugin.moby.localhost"+c.endpoint, bytes.NewReader(c.body))
			req.Header.Set("Accept", "application/vnd.docker.plugins.v1.2+json")
			res, err := client.Do(req)
			if err != nil {
				r.err = err.Error()
			} else {
				data, err := io.ReadAll(res.Body)
				res.Body.Close()
				var m map[string]json.RawMessage
				switch {
				case err != nil:
					r.err = err.Error()
				case res.StatusCode != 200:
					r.err = fmt.Sprintf("status %d: %s", res.StatusCode, data)
				case json.Unmarshal(data, &m) != nil:
					r.err = "answer is not JSON: " + string(data)
				default:
					r.err = c.check(m)
					if e, ok := m["Err"]; ok && string(e) != `""` {
						r.err = "Err " + string(e)
					}
				}
			}
			r.ms = float64(time.Since(due).Microseconds()) / 1000
			results[i] = r
		}(i, due)
	}
	wg.Wait()

	byEndpoint := map[string][]float64{}
	all := []float64{}
	errs := map[string]int{}
	nerr := 0
	for _, r := range results {
		if r.err != "" {
			nerr++
			if len(errs) < 5 {
				errs[r.err]++
			}
			continue
		}
		byEndpoint[r.endpoint] = append(byEndpoint[r.endpoint], r.ms)
		all = append(all, r.ms)
	}
	summary := func(xs []float64) map[string]float64 {
		sort.Float64s(xs)
		p := func(q float64) float64 {
			if len(xs) == 0 {
				return 0
			}
			i := int(q*float64(len(xs))+0.999999) - 1
			if i < 0 {
				i = 0
			}
			if i >= len(xs) {
				i = len(xs) - 1
			}
			return xs[i]
		}
		return map[string]float64{"n": float64(len(xs)), "p50": p(0.5), "p99": p(0.99), "p999": p(0.999), "max": p(1)}
	}
	out := map[string]interface{}{"all": summary(all), "errors": nerr, "errorSamples": errs, "senderMaxLateMs": float64(maxLate.Microseconds()) / 1000}
	eps := map[string]interface{}{}
	for ep, xs := range byEndpoint {
		eps[ep] = summary(xs)
	}
	out["endpoints"] = eps
	json.NewEncoder(os.Stdout).Encode(out)
}
