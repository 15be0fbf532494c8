package moto

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
)

// lambdaState serialises reservations, so that two concurrent ones cannot
// both take the last unreserved concurrency.
type lambdaState struct {
	mu sync.Mutex
}

// AWS's defaults for the account limits GetAccountSettings shows
// (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
const (
	minUnreserved    = 10 // Lambda keeps this much concurrency unreserved
	codeSizeUnzipped = 262144000
	codeSizeZipped   = 52428800
	totalCodeSize    = 80530636800
)

var (
	accountSettingsPath = regexp.MustCompile(`^/2016-08-19/account-settings/?$`)
	concurrencyPath     = regexp.MustCompile(`^/2017-10-31/functions/([^/]+)/concurrency/?$`)
)

// serveLambda adds the account's concurrency limit, which moto lacks.
func (p *Proxy) serveLambda(w http.ResponseWriter, r *http.Request, c call) bool {
	switch {
	case r.Method == http.MethodGet && accountSettingsPath.MatchString(r.URL.Path):
		p.accountSettings(w, r, c)
		return true
	case r.Method == http.MethodPut && concurrencyPath.MatchString(r.URL.Path):
		name, err := url.PathUnescape(concurrencyPath.FindStringSubmatch(r.URL.Path)[1])
		if err != nil {
			return false
		}
		p.putConcurrency(w, r, c, functionName(name))
		return true
	}
	return false
}

// functionName takes the name out of a function ARN or partial ARN.
func functionName(s string) string {
	if _, after, ok := strings.Cut(s, "function:"); ok {
		s = after
	}
	name, _, _ := strings.Cut(s, ":") // a qualifier
	return name
}

type functionUsage struct {
	count    int
	codeSize int64
	reserved map[string]int // by function name, those with a reservation
}

// functions lists the region's functions and their reservations.
func (p *Proxy) functions(ctx context.Context, region string) (functionUsage, error) {
	m := p.moto.in(region).Lambda
	u := functionUsage{reserved: map[string]int{}}
	pages := lambda.NewListFunctionsPaginator(m, &lambda.ListFunctionsInput{})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return u, fmt.Errorf("listing functions: %w", err)
		}
		for _, f := range page.Functions {
			u.count++
			u.codeSize += f.CodeSize
			name := aws.ToString(f.FunctionName)
			out, err := m.GetFunctionConcurrency(ctx, &lambda.GetFunctionConcurrencyInput{FunctionName: f.FunctionName})
			if err != nil {
				return u, fmt.Errorf("reading reserved concurrency of %s: %w", name, err)
			}
			if out.ReservedConcurrentExecutions != nil {
				u.reserved[name] = int(*out.ReservedConcurrentExecutions)
			}
		}
	}
	return u, nil
}

// reservedExcept sums the reservations of functions not in except.
func (u functionUsage) reservedExcept(except ...string) int {
	sum := 0
	for name, n := range u.reserved {
		if !slices.Contains(except, name) {
			sum += n
		}
	}
	return sum
}

func (p *Proxy) accountSettings(w http.ResponseWriter, r *http.Request, c call) {
	u, err := p.functions(r.Context(), c.region)
	if err != nil {
		p.forwardFailed(w, "reading Lambda account usage", err)
		return
	}
	limit := p.cfg.ConcurrencyLimit
	writeJSON(w, http.StatusOK, map[string]any{
		"AccountLimit": map[string]any{
			"CodeSizeUnzipped":               codeSizeUnzipped,
			"CodeSizeZipped":                 codeSizeZipped,
			"ConcurrentExecutions":           limit,
			"TotalCodeSize":                  totalCodeSize,
			"UnreservedConcurrentExecutions": limit - u.reservedExcept(),
		},
		"AccountUsage": map[string]any{
			"FunctionCount": u.count,
			"TotalCodeSize": u.codeSize,
		},
	})
}

func reservationMessage() string {
	return fmt.Sprintf("Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution "+
		"below its minimum value of [%d].", minUnreserved)
}

func (p *Proxy) putConcurrency(w http.ResponseWriter, r *http.Request, c call, name string) {
	body, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil {
		p.forwardFailed(w, "reading PutFunctionConcurrency", err)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var in struct{ ReservedConcurrentExecutions *int }
	if json.Unmarshal(body, &in) != nil || in.ReservedConcurrentExecutions == nil {
		p.forward.ServeHTTP(w, r) // moto says what is wrong with it
		return
	}
	p.lambda.mu.Lock()
	defer p.lambda.mu.Unlock()
	u, err := p.functions(r.Context(), c.region)
	if err != nil {
		p.forwardFailed(w, "reading Lambda reservations", err)
		return
	}
	if p.cfg.ConcurrencyLimit-(u.reservedExcept(name)+*in.ReservedConcurrentExecutions) < minUnreserved {
		p.log.Info("PutFunctionConcurrency refused", "function", name, "reserved", *in.ReservedConcurrentExecutions)
		lambdaError(w, http.StatusBadRequest, "InvalidParameterValueException", reservationMessage())
		return
	}
	p.forward.ServeHTTP(w, r)
}

// lambdaError answers in Lambda's REST-JSON error format.
func lambdaError(w http.ResponseWriter, status int, errorType, message string) {
	w.Header().Set("x-amzn-ErrorType", errorType)
	w.Header().Set("x-amzn-RequestId", requestID())
	writeJSON(w, status, map[string]string{"Type": "User", "message": message})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}
