package workload

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	got, err := ParseLabels(strings.NewReader("\ufeffImage,Results\ntest_00,Paul\ntest_65,shower curtain\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["test_00"] != "Paul" || got["test_65"] != "shower curtain" {
		t.Fatalf("Parse = %v", got)
	}
	for name, in := range map[string]string{
		"empty":       "",
		"bad header":  "Name,Label\na,b\n",
		"no rows":     "Image,Results\n",
		"short row":   "Image,Results\na\n",
		"long row":    "Image,Results\na,b,c\n",
		"duplicate":   "Image,Results\na,b\na,c\n",
		"empty label": "Image,Results\na,\n",
	} {
		if _, err := ParseLabels(strings.NewReader(in)); err == nil {
			t.Errorf("%s: Parse accepted %q", name, in)
		}
	}
}
