package plugin

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// BureauLabel is the label the hub forces to the writing bureau's name on
// every series.
const BureauLabel = "bureau"

// parserOptions accept everything the hub's engine may accept: rejecting
// an expression the hub would run is worse than letting the hub say no.
var parserOptions = parser.Options{
	EnableExperimentalFunctions:  true,
	ExperimentalDurationExpr:     true,
	EnableExtendedRangeSelectors: true,
	EnableBinopFillModifiers:     true,
}

// RestrictToBureaus returns expr with a bureau=~"a|b" matcher added to
// every vector selector, so that it reads only the named bureaus' series
// (within what the token may read: the hub enforces tenancy, this only
// narrows). A selector that already has a bureau matcher keeps it and
// gets the new one too, so the result is the intersection. No bureaus
// returns expr unchanged.
func RestrictToBureaus(expr string, bureaus []string) (string, error) {
	if len(bureaus) == 0 {
		return expr, nil
	}
	alts := make([]string, 0, len(bureaus))
	for _, b := range bureaus {
		alts = append(alts, regexp.QuoteMeta(b))
	}
	sort.Strings(alts)
	m, err := labels.NewMatcher(labels.MatchRegexp, BureauLabel, strings.Join(alts, "|"))
	if err != nil {
		return "", fmt.Errorf("bureau matcher: %w", err)
	}
	e, err := parser.NewParser(parserOptions).ParseExpr(expr)
	if err != nil {
		return "", fmt.Errorf("parse PromQL: %w", err)
	}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			vs.LabelMatchers = append(vs.LabelMatchers, m)
		}
		return nil
	})
	return e.String(), nil
}

// interpolate replaces Grafana's interval variables, which Grafana does
// not replace for backend data sources other than its own Prometheus:
// $__interval, $__rate_interval and $__range (also in ${...} form).
func interpolate(expr string, step, rng time.Duration) string {
	rate := max(4*step, time.Minute)
	r := strings.NewReplacer(
		"${__rate_interval}", promDuration(rate), "$__rate_interval", promDuration(rate),
		"${__interval}", promDuration(step), "$__interval", promDuration(step),
		"${__range}", promDuration(rng), "$__range", promDuration(rng),
	)
	return r.Replace(expr)
}

// promDuration formats d in whole seconds as PromQL wants ("90s").
func promDuration(d time.Duration) string {
	s := int64(math.Ceil(d.Seconds()))
	return fmt.Sprintf("%ds", max(s, 1))
}

// stepFor picks the query step for a panel: Grafana's interval, but no
// finer than maxPoints (and the hub's 11000-point limit) allow, in whole
// seconds.
func stepFor(from, to time.Time, interval time.Duration, maxPoints int64) time.Duration {
	if maxPoints <= 0 || maxPoints > 11000 {
		maxPoints = 11000
	}
	step := max(interval, time.Second)
	if minStep := to.Sub(from) / time.Duration(maxPoints); step < minStep {
		step = minStep
	}
	return step.Round(time.Second)
}

var legendRE = regexp.MustCompile(`\{\{\s*(.+?)\s*\}\}`)

// legend renders a legend format like Grafana's Prometheus data source;
// an empty format gives the series' labels in PromQL notation.
func legend(format string, ls map[string]string) string {
	if format == "" {
		return labelString(ls)
	}
	return legendRE.ReplaceAllStringFunc(format, func(m string) string {
		return ls[legendRE.FindStringSubmatch(m)[1]]
	})
}

func labelString(ls map[string]string) string {
	name := ls["__name__"]
	keys := make([]string, 0, len(ls))
	for k := range ls {
		if k != "__name__" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%q", k, ls[k]))
	}
	if len(parts) == 0 && name != "" {
		return name
	}
	return name + "{" + strings.Join(parts, ", ") + "}"
}
