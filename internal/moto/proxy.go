package moto

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/beevik/etree"
	"github.com/google/uuid"
)

// ProxyConfig says where the proxy listens, where moto is, and which of AWS's
// limits and conditions it shows.
type ProxyConfig struct {
	Upstream string       // moto_server base URL, e.g. http://127.0.0.1:41234
	Listen   string       // listen address; "127.0.0.1:0" (the default) picks a port
	Clock    *Clock       // nil: NewClock()
	Log      *slog.Logger // nil: discard

	// EC2
	VCPUQuota         int           // the account's "Running On-Demand Standard instances" vCPU quota; 0 = unlimited
	NoCapacity        []string      // Availability Zones where RunInstances answers InsufficientInstanceCapacity
	Unsupported       []string      // zone:type pairs (us-east-1e:t3.small): instance types a zone does not offer, where RunInstances answers Unsupported
	PendingFor        time.Duration // how long a new instance shows "pending" before "running" [0: moto's own]
	ShuttingDownFor   time.Duration // how long a terminated instance shows "shutting-down" first [0: none]
	TokenMemory       time.Duration // client tokens are remembered this long after their instances terminated [24h]
	TerminatedVisible time.Duration // terminated instances stay in DescribeInstances this long [1h]
	// RunInstancesDelay is how long EC2 takes to answer a RunInstances
	// that launches [0]; its instances exist only once it has answered.
	RunInstancesDelay time.Duration

	// IAM
	// RolePropagation refuses the calls of callers (access key ids)
	// matching a pattern (path.Match: "lambda-*") for the given time after
	// each one's first call, as AWS refuses a new role's calls until IAM
	// has propagated it (EC2, S3 and Lambda calls only).
	RolePropagation map[string]time.Duration

	// S3
	TakenBucketNames []string // global bucket names owned by other accounts

	// Lambda
	ConcurrencyLimit int // the account's ConcurrentExecutions [1000]; AWS keeps 10 unreserved

	// CloudFormation
	Lambdas Invoker // runs custom-resource functions; nil: a stack with custom resources fails with a clear reason
	// CustomResourceTimeout is how long a custom resource may take to answer
	// before its stack fails [5m; AWS waits up to an hour].
	CustomResourceTimeout time.Duration
	// SignalTimeout, when set, replaces the Timeout of every creation
	// policy's resource signals [0: the template's].
	SignalTimeout time.Duration
}

// Invoker runs a Lambda function asynchronously-in-effect, as
// CloudFormation's custom-resource invocation does: the function answers
// by PUTting to the event's ResponseURL.
type Invoker interface {
	Invoke(ctx context.Context, region, function string, payload []byte) error
}

// Proxy is a running proxy.
type Proxy struct {
	cfg      ProxyConfig
	clock    *Clock
	log      *slog.Logger
	upstream *url.URL
	url      string
	ln       net.Listener
	srv      *http.Server
	forward  *httputil.ReverseProxy
	http     *http.Client // to moto, for requests whose answers are rewritten
	moto     *motoClients

	// background work (custom resources, stack deletions) ends with the proxy
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	vcpuQuota   int
	noCapacity  map[string]bool
	unsupported map[string]bool // zone:type
	runDelay    time.Duration
	failCallers map[string]bool
	propagation map[string]time.Duration // caller pattern → how long its roles take to propagate
	firstCall   map[string]time.Time     // by caller, for propagation

	ec2    *ec2State
	lambda lambdaState
	cfn    *cfnState
	sqs    deletedQueues
}

// StartProxy listens and serves until Close (or until ctx ends).
func StartProxy(ctx context.Context, cfg ProxyConfig) (*Proxy, error) {
	up, err := url.Parse(cfg.Upstream)
	if err != nil || up.Scheme == "" || up.Host == "" {
		return nil, fmt.Errorf("starting AWS proxy: upstream %q is not a base URL", cfg.Upstream)
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Clock == nil {
		cfg.Clock = NewClock()
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.TokenMemory == 0 {
		cfg.TokenMemory = 24 * time.Hour
	}
	if cfg.TerminatedVisible == 0 {
		cfg.TerminatedVisible = time.Hour
	}
	if cfg.ConcurrencyLimit == 0 {
		cfg.ConcurrencyLimit = 1000
	}
	if cfg.CustomResourceTimeout == 0 {
		cfg.CustomResourceTimeout = 5 * time.Minute
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("starting AWS proxy: %w", err)
	}
	bg, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		cfg:         cfg,
		clock:       cfg.Clock,
		log:         cfg.Log,
		upstream:    up,
		url:         "http://" + ln.Addr().String(),
		ln:          ln,
		http:        &http.Client{},
		ctx:         bg,
		cancel:      cancel,
		vcpuQuota:   cfg.VCPUQuota,
		noCapacity:  setOf(cfg.NoCapacity),
		unsupported: setOf(cfg.Unsupported),
		runDelay:    cfg.RunInstancesDelay,
		failCallers: map[string]bool{},
		propagation: map[string]time.Duration{},
		firstCall:   map[string]time.Time{},
		ec2:         newEC2State(),
		cfn:         newCFNState(),
	}
	for pattern, d := range cfg.RolePropagation {
		p.SetRolePropagation(pattern, d)
	}
	p.moto = newMotoClients(cfg.Upstream, p.http)
	p.forward = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(up)
			// moto builds URLs (queue URLs, S3 locations) from the Host it
			// was asked on: keep the client's, so those lead back here.
			r.Out.Host = r.In.Host
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.log.Error("forwarding to moto", "method", r.Method, "path", r.URL.Path, "err", err)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 30 * time.Second}
	go func() {
		if err := p.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("AWS proxy stopped serving", "err", err)
		}
	}()
	stop := context.AfterFunc(ctx, func() { p.Close() })
	go func() { <-bg.Done(); stop() }()
	p.log.Info("AWS proxy listening", "url", p.url, "upstream", cfg.Upstream)
	return p, nil
}

// URL is the proxy's base URL (http://127.0.0.1:port): every client's
// AWS_ENDPOINT_URL.
func (p *Proxy) URL() string { return p.url }

// Clock is the emulated cloud's clock.
func (p *Proxy) Clock() *Clock { return p.clock }

// Close stops serving and ends the proxy's background work.
func (p *Proxy) Close() error {
	p.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := p.srv.Shutdown(ctx)
	p.wg.Wait()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("closing AWS proxy: %w", err)
	}
	return nil
}

// SetVCPUQuota changes the account's vCPU quota; 0 is unlimited.
func (p *Proxy) SetVCPUQuota(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.vcpuQuota = n
}

// SetNoCapacity replaces the Availability Zones that have no capacity.
func (p *Proxy) SetNoCapacity(azs ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.noCapacity = setOf(azs)
}

// SetUnsupported replaces the instance types zones do not offer, as
// zone:type pairs (us-east-1e:t3.small).
func (p *Proxy) SetUnsupported(pairs ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.unsupported = setOf(pairs)
}

// offers reports whether zone offers instanceType.
func (p *Proxy) offers(zone, instanceType string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.unsupported[zone+":"+instanceType]
}

// SetRunInstancesDelay changes how long a RunInstances that launches
// takes to answer; 0 answers as fast as moto does.
func (p *Proxy) SetRunInstancesDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.runDelay = max(0, d)
}

func (p *Proxy) runInstancesDelay() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runDelay
}

// FailDownloads makes S3 object reads by this caller (access key id) fail
// with 403 AccessDenied, or stop failing.
func (p *Proxy) FailDownloads(accessKeyID string, fail bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if fail {
		p.failCallers[accessKeyID] = true
	} else {
		delete(p.failCallers, accessKeyID)
	}
}

func (p *Proxy) quota() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.vcpuQuota
}

func (p *Proxy) hasNoCapacity(az string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.noCapacity[az]
}

func (p *Proxy) failsDownloads(caller string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failCallers[caller]
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, adminPrefix) {
		p.serveAdmin(w, r)
		return
	}
	call := identify(r)
	if p.propagating(call) && p.deny(w, r, call) {
		return
	}
	handled := false
	switch call.service {
	case "ec2":
		handled = p.serveEC2(w, r, call)
	case "s3":
		handled = p.serveS3(w, r, call)
	case "lambda":
		handled = p.serveLambda(w, r, call)
	case "cloudformation":
		handled = p.serveCloudFormation(w, r, call)
	case "sqs":
		handled = p.serveSQS(w, r, call)
	}
	if !handled {
		p.forward.ServeHTTP(w, r)
	}
}

// call is who asks which service in which region, as the request's SigV4
// credential scope says.
type call struct {
	service, region, caller string
}

// identify reads the SigV4 credential scope from the Authorization header
// or, for pre-signed URLs, the X-Amz-Credential query parameter:
// AKID/20261126/us-east-1/ec2/aws4_request.
func identify(r *http.Request) call {
	cred := r.URL.Query().Get("X-Amz-Credential")
	if auth := r.Header.Get("Authorization"); auth != "" {
		if _, after, ok := strings.Cut(auth, "Credential="); ok {
			cred, _, _ = strings.Cut(after, ",")
		}
	}
	parts := strings.Split(strings.TrimSpace(cred), "/")
	if len(parts) != 5 {
		return call{}
	}
	return call{caller: parts[0], region: parts[2], service: parts[3]}
}

// readForm reads a Query-protocol request's parameters (body and URL) and
// puts the body back, so the request can still be forwarded unchanged.
func readForm(r *http.Request) (url.Values, []byte, error) {
	body, err := io.ReadAll(r.Body)
	r.Body.Close()
	setBody(r, body)
	if err != nil {
		return nil, nil, fmt.Errorf("reading request body: %w", err)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, nil, fmt.Errorf("parsing form: %w", err)
	}
	for k, vs := range r.URL.Query() {
		form[k] = append(form[k], vs...)
	}
	return form, body, nil
}

// setBody replaces a request's body, to be forwarded as it is.
func setBody(r *http.Request, body []byte) {
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.Header.Set("Content-Length", strconv.Itoa(len(body)))
}

// upstreamAnswer is moto's whole answer to a request whose answer the
// proxy rewrites.
type upstreamAnswer struct {
	status int
	header http.Header
	body   []byte
}

// roundTrip sends r, with body in place of its own, to moto and reads the
// whole answer.
func (p *Proxy) roundTrip(r *http.Request, body []byte) (*upstreamAnswer, error) {
	target := *p.upstream
	target.Path = r.URL.Path
	target.RawPath = r.URL.RawPath
	target.RawQuery = r.URL.RawQuery
	out, err := http.NewRequestWithContext(r.Context(), r.Method, target.String(), bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("building request to moto: %w", err)
	}
	for k, vs := range r.Header {
		switch http.CanonicalHeaderKey(k) {
		case "Accept-Encoding", "Content-Length", "Connection", "Transfer-Encoding":
			continue // the answer is rewritten: take it plain
		}
		out.Header[k] = vs
	}
	out.Host = r.Host
	out.ContentLength = int64(len(body))
	resp, err := p.http.Do(out)
	if err != nil {
		return nil, fmt.Errorf("asking moto: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading moto's answer: %w", err)
	}
	return &upstreamAnswer{status: resp.StatusCode, header: resp.Header, body: answer}, nil
}

// write sends an answer (rewritten or not) to the client.
// forwardXML forwards an action to moto and parses its XML answer. When it
// returns false it has answered the client itself: moto failed or said no.
func (p *Proxy) forwardXML(w http.ResponseWriter, r *http.Request, body []byte, action string) (*upstreamAnswer, *etree.Document, bool) {
	answer, err := p.roundTrip(r, body)
	if err != nil {
		p.forwardFailed(w, "forwarding "+action, err)
		return nil, nil, false
	}
	if answer.status != http.StatusOK {
		answer.write(w)
		return nil, nil, false
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(answer.body); err != nil {
		p.forwardFailed(w, "reading moto's "+action+" answer", err)
		return nil, nil, false
	}
	return answer, doc, true
}

func (a *upstreamAnswer) write(w http.ResponseWriter) {
	for k, vs := range a.header {
		switch http.CanonicalHeaderKey(k) {
		case "Content-Length", "Content-Encoding", "Transfer-Encoding", "Connection":
			continue
		}
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(a.body)))
	w.WriteHeader(a.status)
	w.Write(a.body)
}

// forwardFailed answers a request the proxy could not get through to moto.
func (p *Proxy) forwardFailed(w http.ResponseWriter, what string, err error) {
	p.log.Error(what, "err", err)
	http.Error(w, what+": "+err.Error(), http.StatusBadGateway)
}

// background runs work that Close waits for.
func (p *Proxy) background(f func(ctx context.Context)) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f(p.ctx)
	}()
}

func requestID() string { return uuid.NewString() }

func setOf(items []string) map[string]bool {
	s := map[string]bool{}
	for _, it := range items {
		if it = strings.TrimSpace(it); it != "" {
			s[it] = true
		}
	}
	return s
}
