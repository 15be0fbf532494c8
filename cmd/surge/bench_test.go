package main

import (
	"slices"
	"testing"
)

func TestWebCounts(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []int
	}{
		{"1", []int{1}},
		{"1,2", []int{1, 2}},
		{" 1, 3 ", []int{1, 3}},
	} {
		got, err := webCounts(c.in)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("webCounts(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "0", "1,,2", "two", "-1"} {
		if got, err := webCounts(bad); err == nil {
			t.Errorf("webCounts(%q) = %v, want an error", bad, got)
		}
	}
}
