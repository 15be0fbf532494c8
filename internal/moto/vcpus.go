package moto

import (
	"strconv"
	"strings"
)

// vcpusOf is the number of vCPUs of an instance type of the families the
// emulation needs, all in the "Running On-Demand Standard (A, C, D, H, I,
// M, R, T, Z) instances" quota bucket
// (https://docs.aws.amazon.com/ec2/latest/instancetypes/gp.html and
// co.html, mo.html, ...): nano, micro and small sizes per family, large 2,
// xlarge 4, Nxlarge 4N. m1.small is RunInstances' default type.
func vcpusOf(instanceType string) (int, bool) {
	if instanceType == "m1.small" {
		return 1, true
	}
	family, size, ok := strings.Cut(instanceType, ".")
	if !ok {
		return 0, false
	}
	burstable := map[string]map[string]int{
		"t2":  {"nano": 1, "micro": 1, "small": 1, "medium": 2, "large": 2},
		"t3":  {"nano": 2, "micro": 2, "small": 2, "medium": 2, "large": 2},
		"t3a": {"nano": 2, "micro": 2, "small": 2, "medium": 2, "large": 2},
		"t4g": {"nano": 2, "micro": 2, "small": 2, "medium": 2, "large": 2},
	}
	fixed := map[string]bool{
		"m5": true, "m6i": true, "m7i": true, "c5": true, "c6i": true, "c7i": true, "r5": true, "r6i": true,
		// Graviton
		"m6g": true, "m7g": true, "c6g": true, "c7g": true, "r6g": true, "r7g": true,
	}
	small, isBurstable := burstable[family]
	if !isBurstable && !fixed[family] {
		return 0, false
	}
	if n, ok := small[size]; ok {
		return n, true
	}
	switch size {
	case "large":
		return 2, true
	case "xlarge":
		return 4, true
	}
	num, ok := strings.CutSuffix(size, "xlarge")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 2 {
		return 0, false
	}
	if isBurstable && n > 2 {
		return 0, false // burstable families stop at 2xlarge
	}
	return 4 * n, true
}
