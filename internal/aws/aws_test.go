package aws_test

import (
	"sync/atomic"
	"testing"

	"github.com/surgeml/surge/internal/moto"
)

// Every test here runs against one moto_server per test binary.
func TestMain(m *testing.M) { moto.Main(m) }

// serial makes resource names unique within the shared server.
var serial atomic.Int32
