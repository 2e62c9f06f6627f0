//go:build !race

package webhookserver

// raceEnabled is true under -race, which makes the code under test several
// times slower, TLS handshakes most of all.
const raceEnabled = false
