package moto

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// template is the part of a CloudFormation template the proxy reads.
type template struct {
	Parameters map[string]templateParameter
	Resources  map[string]templateResource
	order      []string // logical ids of Resources in template order
}

type templateParameter struct {
	Type    string
	Default any
}

type templateResource struct {
	Type           string
	Properties     map[string]any
	DependsOn      any // a logical id or a list of them
	CreationPolicy *struct {
		ResourceSignal *struct {
			Count   any
			Timeout string
		}
	}
}

// parseTemplate reads a JSON template; ok is false for anything else
// (YAML, which the proxy passes through unchecked).
func parseTemplate(body []byte) (*template, bool) {
	var t template
	if err := json.Unmarshal(body, &t); err != nil {
		return nil, false
	}
	t.order = resourceOrder(body)
	return &t, true
}

// resourceOrder reads the keys of the top-level Resources object in the
// order they are written, which encoding/json's maps forget.
func resourceOrder(body []byte) []string {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(top["Resources"]))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return keys
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return keys
		}
	}
	return keys
}

func isCustomResource(typ string) bool {
	return strings.HasPrefix(typ, "Custom::") || typ == "AWS::CloudFormation::CustomResource"
}

// customResources lists the template's custom resources in the order
// CloudFormation would create them one at a time: after every custom
// resource they depend on (through Ref, Fn::GetAtt or DependsOn, directly
// or through other resources), ties in template order.
func (t *template) customResources() ([]string, error) {
	deps := map[string][]string{}
	for _, id := range t.order {
		res := t.Resources[id]
		deps[id] = append(references(res.Properties), dependsOn(res.DependsOn)...)
	}
	// customAncestors collects the custom resources id depends on.
	memo := map[string]map[string]bool{}
	var visiting = map[string]bool{}
	var customAncestors func(id string) (map[string]bool, error)
	customAncestors = func(id string) (map[string]bool, error) {
		if m, ok := memo[id]; ok {
			return m, nil
		}
		if visiting[id] {
			return nil, fmt.Errorf("circular dependency through %s", id)
		}
		visiting[id] = true
		m := map[string]bool{}
		for _, d := range deps[id] {
			if _, ok := t.Resources[d]; !ok {
				continue // a parameter or pseudo parameter
			}
			if isCustomResource(t.Resources[d].Type) {
				m[d] = true
			}
			up, err := customAncestors(d)
			if err != nil {
				return nil, err
			}
			for a := range up {
				m[a] = true
			}
		}
		visiting[id] = false
		memo[id] = m
		return m, nil
	}
	var customs []string
	waiting := map[string]map[string]bool{}
	for _, id := range t.order {
		if !isCustomResource(t.Resources[id].Type) {
			continue
		}
		customs = append(customs, id)
		up, err := customAncestors(id)
		if err != nil {
			return nil, err
		}
		waiting[id] = up
	}
	var order []string
	done := map[string]bool{}
	for len(order) < len(customs) {
		progressed := false
		for _, id := range customs {
			if done[id] {
				continue
			}
			ready := true
			for d := range waiting[id] {
				if !done[d] {
					ready = false
				}
			}
			if ready {
				order = append(order, id)
				done[id] = true
				progressed = true
				break // ties go to the earliest in the template
			}
		}
		if !progressed {
			return nil, fmt.Errorf("circular dependency among custom resources")
		}
	}
	return order, nil
}

// references collects the logical ids a value names through Ref and
// Fn::GetAtt.
func references(v any) []string {
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if len(v) == 1 {
				if ref, ok := v["Ref"].(string); ok {
					out = append(out, ref)
					return
				}
				if att, ok := v["Fn::GetAtt"]; ok {
					switch att := att.(type) {
					case []any:
						if len(att) > 0 {
							if s, ok := att[0].(string); ok {
								out = append(out, s)
							}
						}
					case string:
						name, _, _ := strings.Cut(att, ".")
						out = append(out, name)
					}
					return
				}
			}
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				walk(v[k])
			}
		case []any:
			for _, it := range v {
				walk(it)
			}
		}
	}
	walk(v)
	return out
}

func dependsOn(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, it := range v {
			if s, ok := it.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// resolver evaluates the intrinsic functions the proxy needs. Anything it
// cannot evaluate is unknown (ok false), and the check that needed it is
// skipped.
type resolver struct {
	region, accountID, stackName, stackID string
	params                                map[string]string         // given with the request
	template                              *template                 // for parameter defaults and types
	zones                                 func() ([]string, error)  // Fn::GetAZs
	physical                              map[string]string         // logical id → physical id, once the stack exists
	customData                            map[string]map[string]any // custom resources' Data, for Fn::GetAtt
}

func (rv *resolver) resolve(v any) (any, bool) {
	switch v := v.(type) {
	case string, float64, bool, json.Number:
		return v, true
	case []any:
		out := make([]any, 0, len(v))
		for _, it := range v {
			r, ok := rv.resolve(it)
			if !ok {
				return nil, false
			}
			out = append(out, r)
		}
		return out, true
	case map[string]any:
		if len(v) == 1 {
			for fn, arg := range v {
				if fn == "Ref" || strings.HasPrefix(fn, "Fn::") {
					return rv.intrinsic(fn, arg)
				}
			}
		}
		out := make(map[string]any, len(v))
		for k, it := range v {
			r, ok := rv.resolve(it)
			if !ok {
				return nil, false
			}
			out[k] = r
		}
		return out, true
	}
	return nil, false
}

// resolvePartial resolves what it can and leaves the rest as written.
func (rv *resolver) resolvePartial(v any) any {
	if r, ok := rv.resolve(v); ok {
		return r
	}
	switch v := v.(type) {
	case []any:
		out := make([]any, len(v))
		for i, it := range v {
			out[i] = rv.resolvePartial(it)
		}
		return out
	case map[string]any:
		if len(v) == 1 {
			for fn := range v {
				if fn == "Ref" || strings.HasPrefix(fn, "Fn::") {
					return v
				}
			}
		}
		out := make(map[string]any, len(v))
		for k, it := range v {
			out[k] = rv.resolvePartial(it)
		}
		return out
	}
	return v
}

func (rv *resolver) intrinsic(fn string, arg any) (any, bool) {
	switch fn {
	case "Ref":
		name, ok := arg.(string)
		if !ok {
			return nil, false
		}
		return rv.ref(name)
	case "Fn::GetAZs":
		region, ok := rv.resolve(arg)
		if !ok || (region != "" && region != rv.region) || rv.zones == nil {
			return nil, false
		}
		zones, err := rv.zones()
		if err != nil {
			return nil, false
		}
		out := make([]any, len(zones))
		for i, z := range zones {
			out[i] = z
		}
		return out, true
	case "Fn::Select":
		args, ok := arg.([]any)
		if !ok || len(args) != 2 {
			return nil, false
		}
		idx, ok1 := rv.resolve(args[0])
		list, ok2 := rv.resolve(args[1])
		n, ok3 := toInt(idx)
		items, ok4 := list.([]any)
		if !ok1 || !ok2 || !ok3 || !ok4 || n < 0 || n >= len(items) {
			return nil, false
		}
		return items[n], true
	case "Fn::Join":
		args, ok := arg.([]any)
		if !ok || len(args) != 2 {
			return nil, false
		}
		delim, ok1 := args[0].(string)
		list, ok2 := rv.resolve(args[1])
		items, ok3 := list.([]any)
		if !ok1 || !ok2 || !ok3 {
			return nil, false
		}
		parts := make([]string, len(items))
		for i, it := range items {
			s, ok := scalarString(it)
			if !ok {
				return nil, false
			}
			parts[i] = s
		}
		return strings.Join(parts, delim), true
	case "Fn::GetAtt":
		var name, attr string
		switch a := arg.(type) {
		case []any:
			if len(a) != 2 {
				return nil, false
			}
			name, _ = a[0].(string)
			attr, _ = a[1].(string)
		case string:
			name, attr, _ = strings.Cut(a, ".")
		}
		if data, ok := rv.customData[name]; ok {
			v, ok := data[attr]
			return v, ok
		}
	}
	return nil, false
}

func (rv *resolver) ref(name string) (any, bool) {
	switch name {
	case "AWS::Region":
		return rv.region, true
	case "AWS::AccountId":
		return rv.accountID, true
	case "AWS::StackName":
		return rv.stackName, rv.stackName != ""
	case "AWS::StackId":
		return rv.stackID, rv.stackID != ""
	case "AWS::URLSuffix":
		return "amazonaws.com", true
	case "AWS::Partition":
		return "aws", true
	}
	if rv.template != nil {
		if param, ok := rv.template.Parameters[name]; ok {
			if v, given := rv.params[name]; given {
				return parameterValue(param.Type, v), true
			}
			if param.Default != nil {
				if s, ok := param.Default.(string); ok {
					return parameterValue(param.Type, s), true
				}
				return param.Default, true
			}
			return nil, false
		}
	}
	if id, ok := rv.physical[name]; ok {
		return id, true
	}
	return nil, false
}

// parameterValue gives list-typed parameters their list value.
func parameterValue(typ, v string) any {
	if typ == "CommaDelimitedList" || strings.HasPrefix(typ, "List<") {
		var out []any
		for _, s := range strings.Split(v, ",") {
			out = append(out, strings.TrimSpace(s))
		}
		return out
	}
	return v
}

func toInt(v any) (int, bool) {
	switch v := v.(type) {
	case float64:
		return int(v), v == float64(int(v))
	case string:
		n, err := strconv.Atoi(v)
		return n, err == nil
	case json.Number:
		n, err := strconv.Atoi(string(v))
		return n, err == nil
	}
	return 0, false
}

func scalarString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(v), true
	}
	return "", false
}

// resolvedString is a property resolved to a string, if it can be.
func (rv *resolver) resolvedString(v any) (string, bool) {
	if v == nil {
		return "", false
	}
	r, ok := rv.resolve(v)
	if !ok {
		return "", false
	}
	return scalarString(r)
}
