//go:build !linux

package clock

import "errors"

func newFDAlarm() (Alarm, error) { return nil, errors.New("clock: no timerfd here") }
