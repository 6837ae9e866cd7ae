//go:build race

package main

// raceEnabled is whether the test binary has the race detector; the
// end-to-end test then builds nixery with it too.
const raceEnabled = true
