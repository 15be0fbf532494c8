package main

import (
	"net"
	"testing"
)

func TestListensEverywhere(t *testing.T) {
	for _, c := range []struct {
		addr net.Addr
		want bool
	}{
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 8000}, true}, // what ":8000" binds
		{&net.TCPAddr{IP: net.IPv4zero, Port: 8000}, true},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8000}, false},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 8000}, false},
		{&net.TCPAddr{IP: net.IPv4(10, 0, 0, 5), Port: 8000}, false},
		{&net.UnixAddr{Name: "/run/surge.sock", Net: "unix"}, false},
	} {
		if got := listensEverywhere(c.addr); got != c.want {
			t.Errorf("listensEverywhere(%v) = %v, want %v", c.addr, got, c.want)
		}
	}
}
