package framework

import (
	"fmt"
	"strconv"
	"strings"
)

// MetricSum sums the samples of metric name in a Prometheus text exposition
// (what /metrics serves) whose labels contain every one of labels, each written
// as `name="value"`. A sample that does not parse is an error.
func MetricSum(exposition, name string, labels ...string) (float64, error) {
	var sum float64
	for _, line := range strings.Split(exposition, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("metric %s: %q: %w", name, line, err)
		}
		sum += v
	}
	return sum, nil
}
