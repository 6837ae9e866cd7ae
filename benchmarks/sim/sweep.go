package sim

import "slices"

// Sweep describes a full simulation.
type Sweep struct {
	// Seeds are the workload seeds; each shape is generated with each.
	Seeds []uint64
	// Images is the number of images per workload.
	Images int
	// ImageCounts, when set, gives the number of images of the workloads
	// of each seed instead (parallel to Seeds).
	ImageCounts []int
	// Budgets are the layer budgets; nil means [Budgets].
	Budgets []int
	// Algorithms are the comparators; nil means [Algorithms].
	Algorithms []Algorithm
}

// DefaultSweep is what the harness runs: three seeds of every shape, 60
// images each.
var DefaultSweep = Sweep{Seeds: []uint64{1, 2, 3}, Images: 60}

// The archive corpus ([Archive]) is evaluated on held-out seeds: whatever
// is chosen (a constant of layers.Group, a parameter of the model) is
// chosen on [ArchiveTuningSweep] and on the harness's own corpus, and
// reported on [ArchiveSweep], whose seeds nothing was chosen on. Both have
// workloads of 20, 40 and 60 images, as issue 14's evaluation.
var (
	ArchiveTuningSweep = Sweep{Seeds: []uint64{1, 2, 3}, ImageCounts: []int{20, 40, 60}}
	ArchiveSweep       = Sweep{Seeds: []uint64{1001, 1002, 1003}, ImageCounts: []int{20, 40, 60}}
)

// Workloads generates the workloads of the sweep: every shape with every
// seed.
func (s Sweep) Workloads(u *Universe) ([]Workload, error) {
	var out []Workload
	for _, shape := range Shapes {
		for i, seed := range s.Seeds {
			n := s.Images
			if i < len(s.ImageCounts) {
				n = s.ImageCounts[i]
			}
			w, err := u.Generate(shape, seed, n)
			if err != nil {
				return nil, err
			}
			out = append(out, w)
		}
	}
	return out, nil
}

// Paths returns every store path the workloads' images hold, sorted: the
// paths whose compressed sizes [Simulate] needs.
func Paths(u *Universe, workloads []Workload) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, w := range workloads {
		for _, im := range w.Images {
			g, err := u.Closure(im)
			if err != nil {
				return nil, err
			}
			for _, p := range g.Paths() {
				if !seen[p.Path] {
					seen[p.Path] = true
					out = append(out, p.Path)
				}
			}
		}
	}
	sortStrings(out)
	return out, nil
}

// Run generates the workloads and simulates them.
func (s Sweep) Run(u *Universe, workloads []Workload, sizes Sizes) (*Outcome, error) {
	budgets, algos := s.Budgets, s.Algorithms
	if budgets == nil {
		budgets = Budgets
	}
	if algos == nil {
		algos = Algorithms()
	}
	return Simulate(u, workloads, algos, budgets, sizes)
}

func sortStrings(s []string) { slices.Sort(s) }
