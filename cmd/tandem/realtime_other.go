//go:build !linux

package main

import "errors"

func goRealtime() error { return errors.New("real-time scheduling is only supported on Linux") }

func quietSysmon() error { return nil }
