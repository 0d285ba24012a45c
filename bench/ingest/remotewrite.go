package ingest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// remoteWriteSender posts batches as Prometheus' remote_write 1.0 does:
// each sender (a "shard") owns its series and has one request in flight.
type remoteWriteSender struct {
	url       string
	caPEM     []byte // nil: plain HTTP
	senders   int
	batchSize int
	timeout   time.Duration
}

func (s *remoteWriteSender) client() (*http.Client, error) {
	tr := &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: s.senders,
		IdleConnTimeout:     time.Minute,
	}
	if s.caPEM != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(s.caPEM) {
			return nil, errors.New("no CA certificate")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: s.timeout}, nil
}

func (s *remoteWriteSender) run(ctx context.Context, load *Load, m *meter) {
	hc, err := s.client()
	if err != nil {
		m.fail(err.Error())
		return
	}
	defer hc.CloseIdleConnections()
	var wg sync.WaitGroup
	for i := range s.senders {
		part := load.Partition(i)
		wg.Go(func() {
			for {
				b, ok := part.Next(ctx, s.batchSize)
				if !ok {
					return
				}
				m.sent.Add(int64(b.Samples))
				sentAt := time.Now()
				if err := s.post(hc, b.Payload); err != nil {
					m.fail(err.Error())
					if errors.Is(err, errTransport) {
						// Do not spin on a dead server.
						time.Sleep(100 * time.Millisecond)
					}
					continue
				}
				m.acked(b.Samples, 0, sentAt)
			}
		})
	}
	wg.Wait()
}

var errTransport = errors.New("transport error")

func (s *remoteWriteSender) post(hc *http.Client, payload []byte) error {
	// The request outlives the load's ctx: a batch sent is waited for.
	req, err := http.NewRequest(http.MethodPost, s.url, bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", "bureauhub-ingestbench")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", errTransport, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("http %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	return nil
}
