package moto

import (
	"context"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
)

// A stack update may keep a parameter's value (UsePreviousValue), as the
// CDK CLI asks for every parameter of a deployed stack. moto keeps only
// the values a request gave, and fails on a parameter that took its
// template default (the CDK's image parameters do). The proxy remembers
// which parameters each stack was given and leaves the others out of an
// update: their previous value was the default, which applies again.

// stackParam is one member of a request's Parameters list.
type stackParam struct {
	key, value string
	previous   bool // UsePreviousValue
}

// paramList reads Parameters.member.N in order.
func paramList(form url.Values) []stackParam {
	members := queryList(form, "Parameters.member.")
	var out []stackParam
	for _, n := range sortedInts(members) {
		m := members[n]
		out = append(out, stackParam{key: m["ParameterKey"], value: m["ParameterValue"], previous: m["UsePreviousValue"] == "true"})
	}
	return out
}

// setParamList replaces a form's Parameters list.
func setParamList(form url.Values, params []stackParam) {
	for k := range form {
		if k == "Parameters" || strings.HasPrefix(k, "Parameters.") {
			delete(form, k)
		}
	}
	for i, p := range params {
		prefix := "Parameters.member." + strconv.Itoa(i+1) + "."
		form.Set(prefix+"ParameterKey", p.key)
		if p.previous {
			form.Set(prefix+"UsePreviousValue", "true")
		} else {
			form.Set(prefix+"ParameterValue", p.value)
		}
	}
}

// given records the parameters a stack was created or updated with.
func (s *cfnState) given(stackID string, params []stackParam, update bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := map[string]bool{}
	for _, p := range params {
		if !p.previous || update && s.explicit[stackID][p.key] {
			keys[p.key] = true
		}
	}
	s.explicit[stackID] = keys
}

// keepPrevious leaves out of an update's parameters those the stack was
// never given, so that moto applies their defaults again. It returns the
// stack's id ("" if moto has no such stack).
func (p *Proxy) keepPrevious(ctx context.Context, region, stack string, form url.Values) string {
	out, err := p.moto.in(region).CFN.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(stack)})
	if err != nil || len(out.Stacks) == 0 {
		return ""
	}
	id := aws.ToString(out.Stacks[0].StackId)
	p.cfn.mu.Lock()
	explicit := p.cfn.explicit[id]
	p.cfn.mu.Unlock()
	params := slices.DeleteFunc(paramList(form), func(sp stackParam) bool { return sp.previous && !explicit[sp.key] })
	setParamList(form, params)
	return id
}
