// This file reads the course's expected-answer files: a header
// "Image,Results", then one row per image stem and its label.

package workload

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ReadLabels returns stem → label from the CSV at path.
func ReadLabels(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading labels: %w", err)
	}
	defer f.Close()
	labels, err := ParseLabels(f)
	if err != nil {
		return nil, fmt.Errorf("reading labels %s: %w", path, err)
	}
	return labels, nil
}

// ParseLabels reads an Image,Results CSV.
func ParseLabels(r io.Reader) (map[string]string, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = 2
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if strings.TrimPrefix(header[0], "\ufeff") != "Image" || header[1] != "Results" {
		return nil, fmt.Errorf("header is %q, want \"Image,Results\"", strings.Join(header, ","))
	}
	labels := map[string]string{}
	for {
		row, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		line, _ := cr.FieldPos(0)
		if row[0] == "" || row[1] == "" {
			return nil, fmt.Errorf("line %d: empty image or label", line)
		}
		if _, dup := labels[row[0]]; dup {
			return nil, fmt.Errorf("line %d: image %q listed twice", line, row[0])
		}
		labels[row[0]] = row[1]
	}
	if len(labels) == 0 {
		return nil, errors.New("no rows")
	}
	return labels, nil
}
