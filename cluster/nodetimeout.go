package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// formingNodeTimeout is cluster-node-timeout while Init forms a cluster of empty
// nodes: Valkey's lower bound for the rejoin delay.
const formingNodeTimeout = 500

// shortenNodeTimeout sets cluster-node-timeout to formingNodeTimeout on every
// node that has a longer one, for the time Init forms the cluster, and returns
// the function that puts each node's own value back.
//
// A master reports cluster_state:ok only a rejoin delay after it last counted
// itself in a minority, and an empty master counts itself in a minority until
// slots exist. The delay is the node timeout, at most 5s: with the default 5000
// ms every formation would wait 5s for nothing. The nodes are empty (Init forms
// no cluster over data), so a short timeout meanwhile cannot fail over a master
// that holds keys. Nothing is rewritten to valkey.conf: a node restarted before
// restore runs has its configured value again.
//
// restore is safe to call more than once; it uses its own short deadline, so
// that it runs even after ctx has expired.
func (s *session) shortenNodeTimeout(ctx context.Context) (restore func() error, err error) {
	original := map[*member]string{}
	restore = func() error {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		var errs []error
		for m, v := range original {
			if err := m.do(rctx, "CONFIG", "SET", "cluster-node-timeout", v); err != nil {
				errs = append(errs, fmt.Errorf("%s: putting cluster-node-timeout back to %s: %w", m.Address, v, err))
				continue
			}
			delete(original, m)
		}
		return errors.Join(errs...)
	}
	for _, m := range s.members {
		kv, err := m.client.Do(ctx, m.client.B().ConfigGet().Parameter("cluster-node-timeout").Build()).AsStrMap()
		if err != nil {
			return restore, fmt.Errorf("%s: CONFIG GET cluster-node-timeout: %w", m.Address, err)
		}
		v := kv["cluster-node-timeout"]
		if n, err := strconv.Atoi(v); err != nil || n <= formingNodeTimeout {
			continue
		}
		if err := m.do(ctx, "CONFIG", "SET", "cluster-node-timeout", strconv.Itoa(formingNodeTimeout)); err != nil {
			return restore, fmt.Errorf("%s: CONFIG SET cluster-node-timeout: %w", m.Address, err)
		}
		original[m] = v
	}
	return restore, nil
}
