package aws

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"
)

// EC2 remembers a RunInstances client token for at least 24 hours after
// the instance it made terminates, and answers a repeat with that
// instance, while terminated instances leave DescribeInstances within
// about an hour. So a token must never be derived from what
// DescribeInstances shows (that forgets), only from something that never
// repeats: the launch scope.

type scopeKey struct{}

// WithLaunchScope returns a context whose launches belong to scope. Two
// scalers that launch the same name in the same subnet under the same
// scope ask for the same instance, and EC2 makes it once; no two
// different decisions may share a scope. The scheduled Lambda uses the
// EventBridge event's id and time: a duplicate delivery of one event
// shares both, no two minutes do.
func WithLaunchScope(ctx context.Context, scope string) context.Context {
	return context.WithValue(ctx, scopeKey{}, scope)
}

type cutoffKey struct{}

// WithLaunchCutoff returns a context under which no launch starts at or
// after cutoff: one started later might not be answered before the
// caller's deadline, and a launch EC2 received goes ahead whether or not
// its caller is still there to see the answer. The scheduled Lambda uses
// its window's end less the time EC2 may take to answer, so that every
// launch of one minute is listed before the next minute decides.
func WithLaunchCutoff(ctx context.Context, cutoff time.Time) context.Context {
	return context.WithValue(ctx, cutoffKey{}, cutoff)
}

// ErrLaunchCutoff is why a launch stopped at its context's cutoff.
var ErrLaunchCutoff = errors.New("too late to start a launch (its cutoff has passed)")

// launchScope is the context's scope, or the fleet's own random one,
// which never repeats and is shared with no one.
func (f *Fleet) launchScope(ctx context.Context) string {
	if s, ok := ctx.Value(scopeKey{}).(string); ok && s != "" {
		return s
	}
	return f.scope
}

// launchToken is the first client token for launching name in subnet
// within scope. The subnet is part of it so that trying another subnet
// after a capacity error is a new request, not a mismatched repeat of the
// first (which EC2 refuses with IdempotentParameterMismatch).
func launchToken(fleetName, name, subnet, scope string) string {
	return token(fleetName, name, subnet, scope)
}

// chainToken is the token to try after prev was answered with replayed,
// an instance that has ended: the same name launched again within one
// scope. Instance ids never repeat, so neither do chained tokens.
func chainToken(prev, replayed string) string {
	return token(prev, replayed)
}

// token hashes its parts, NUL-separated so no two lists of parts run
// together alike, into 38 ASCII characters: EC2 takes at most 64.
func token(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return "surge-" + hex.EncodeToString(h.Sum(nil)[:16])
}
