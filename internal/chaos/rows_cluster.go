package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// clusterLeaseTTL is the replicas' lease in the failover row: short, so a
// failover fits in the row.
const clusterLeaseTTL = 2 * time.Second

// rowReplicaFailover runs two replicas sharing the pipelines through a
// JetStream KV bucket: a second replica joins (a hand-over), the first is
// SIGKILLed (a failover after the lease expires), comes back (a hand-over
// back), and the second stops gracefully (a hand-over).
func rowReplicaFailover() *row {
	return &row{
		key: "replica-failover", fault: "Replica failover (cluster)",
		checked: "two replicas share the pipelines through JetStream KV leases (lease_ttl 2s): a second one joins and takes a share, the first is SIGKILLed and the second takes its pipeline over once the lease expired, the first restarts and takes its share back, the second stops with SIGTERM and hands over at once; the reader subscriber reads the first replica",
		sinks:   both,
		setup: func(r *rowRun) {
			r.spec.cluster = "a"
		},
		inject: func(ctx context.Context, r *rowRun) error {
			port, err := freePort()
			if err != nil {
				return err
			}
			spec := r.spec
			spec.cluster = "b"
			spec.dataDir = filepath.Join(r.dir, "data-b")
			spec.httpAddr = fmt.Sprintf("127.0.0.1:%d", port)
			if err := mkdirFor(spec.dataDir, r.h.cred); err != nil {
				return err
			}
			cfg := filepath.Join(r.dir, "ssebridge-b.yaml")
			if err := os.WriteFile(cfg, []byte(spec.yaml()), 0o644); err != nil {
				return err
			}
			b := &bridge{bin: r.h.bins.bridge, cfgPath: cfg, dataDir: spec.dataDir, logPath: filepath.Join(r.dir, "ssebridge-b.log"),
				addr: spec.httpAddr, cred: r.h.cred}
			defer func() {
				if p := b.cur(); p != nil {
					p.kill()
				}
			}()
			if !r.at(ctx, r.p.dur/5) {
				return nil
			}
			r.logf("replica b joins")
			if err := b.start(ctx); err != nil {
				return err
			}
			if !r.at(ctx, r.p.dur*2/5) {
				return nil
			}
			r.logf("SIGKILL replica a")
			owned := runningOn(ctx, b.addr)
			r.br.cur().kill()
			killed := time.Now()
			r.faultEnd(killed)
			// The failover proper: when b runs every pipeline.
			for ctx.Err() == nil && len(runningOn(ctx, b.addr)) < len(r.row.sinks) && time.Since(killed) < 10*clusterLeaseTTL {
				sleepCtx(ctx, 50*time.Millisecond)
			}
			if n := len(runningOn(ctx, b.addr)); n == len(r.row.sinks) {
				r.note("failover: replica b ran %d pipeline(s) before the SIGKILL and all %d %.1f s after it (lease_ttl %s)", len(owned), n, time.Since(killed).Seconds(), clusterLeaseTTL)
			} else {
				r.problem(fmt.Sprintf("replica b ran %d of %d pipelines %s after replica a was killed", n, len(r.row.sinks), 10*clusterLeaseTTL))
			}
			if !r.at(ctx, r.p.dur*3/5) {
				return nil
			}
			r.logf("replica a restarts")
			if err := r.br.start(ctx); err != nil {
				return err
			}
			if !r.at(ctx, r.p.dur*4/5) {
				return nil
			}
			r.logf("SIGTERM replica b")
			p := b.cur()
			p.sig(syscall.SIGTERM)
			if code, sig, ok := p.wait(20 * time.Second); !ok || code != 0 {
				r.problem(fmt.Sprintf("replica b did not exit 0 after SIGTERM (code %d %s, exited %v)", code, sig, ok))
			}
			r.note("recovery is counted from the SIGKILL to the first new event stored, which may be one the killed replica had in flight; the failover time is in the note above; the joins and the SIGTERM are hand-overs")
			return nil
		},
		explain: func(res *result) []string {
			switch {
			case res.sink == sinkKafka && res.broker.Dup > 0:
				return []string{fmt.Sprintf("Kafka duplicates (%d): a pipeline taken over after the SIGKILL resumes from the shared checkpoint, so what the dead owner stored after its last save is fetched and written again (at most 1000 events or 100 ms of the feed); hand-overs drain and save first and add none", res.broker.Dup)}
			case res.sink == sinkNATS && res.broker.Dup == 0:
				return []string{"JetStream: the new owner's replay after the SIGKILL is dropped by the duplicate window (same Nats-Msg-Id)."}
			}
			return dupsNone(res)
		},
	}
}

// runningOn lists the pipelines connected on the bridge at addr.
func runningOn(ctx context.Context, addr string) []string {
	code, body := httpGet(ctx, "http://"+addr+"/api/status")
	if code != 200 {
		return nil
	}
	var st struct {
		Pipelines []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"pipelines"`
	}
	if json.Unmarshal([]byte(body), &st) != nil {
		return nil
	}
	var out []string
	for _, p := range st.Pipelines {
		if p.State == "connected" {
			out = append(out, p.Name)
		}
	}
	return out
}
