package blockreg

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"
)

// input is a porcupine operation's input.
type input struct {
	write, maybe bool // maybe: a write that may or may not have taken effect
	block        int
	value        uint64
}

// model is one register per block, starting at 0 (a new volume is
// zeroes); a maybe-write leaves the register either way (the model of
// internal/volume's linearizability tests).
var model = (&porcupine.NondeterministicModel{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[int][]porcupine.Operation{}
		for _, op := range h {
			b := op.Input.(input).block
			by[b] = append(by[b], op)
		}
		var out [][]porcupine.Operation
		for _, b := range slices.Sorted(maps.Keys(by)) {
			out = append(out, by[b])
		}
		return out
	},
	Init: func() []any { return []any{uint64(0)} },
	Step: func(state, in, output any) []any {
		st, op := state.(uint64), in.(input)
		switch {
		case op.write && op.maybe:
			return []any{st, op.value}
		case op.write:
			return []any{op.value}
		case output.(uint64) == st:
			return []any{st}
		}
		return nil
	},
	DescribeOperation: func(in, output any) string {
		op := in.(input)
		switch {
		case op.write && op.maybe:
			return fmt.Sprintf("write?(%d, %#x)", op.block, op.value)
		case op.write:
			return fmt.Sprintf("write(%d, %#x)", op.block, op.value)
		}
		return fmt.Sprintf("read(%d) -> %#x", op.block, output)
	},
}).ToModel()

// operations turns a history into porcupine's: a write of unknown outcome
// may take effect at any time after its call, so it returns after
// everything; a read without an answer says nothing and is left out.
func operations(ops []Op) []porcupine.Operation {
	var last int64
	for _, op := range ops {
		last = max(last, op.Return, op.Call)
	}
	var out []porcupine.Operation
	for _, op := range ops {
		in := input{write: op.Write, block: op.Block, value: op.Value}
		ret := op.Return
		if op.Unknown() {
			if !op.Write {
				continue
			}
			in.maybe, ret = true, last+1
		}
		var output any = uint64(0)
		if !op.Write {
			output = op.Value
		}
		out = append(out, porcupine.Operation{ClientId: op.Client, Input: in, Call: op.Call, Output: output, Return: ret})
	}
	return out
}

// Result is what Check found.
type Result struct {
	Ops          int // operations checked
	Linearizable bool
	TimedOut     bool // porcupine gave up: neither proven nor refuted
	// Explain says, for each block whose history is illegal, how far the
	// longest linearization got and what it could not place after it.
	Explain []string
}

// Check checks the history with porcupine within timeout. If it is not
// linearizable and html is not "", the history is drawn there.
func Check(ops []Op, timeout time.Duration, html string) (Result, error) {
	pops := operations(ops)
	res, info := porcupine.CheckOperationsVerbose(model, pops, timeout)
	r := Result{Ops: len(pops), Linearizable: res == porcupine.Ok, TimedOut: res == porcupine.Unknown}
	if res != porcupine.Illegal {
		return r, nil
	}
	r.Explain = explain(pops, timeout)
	if html != "" {
		if err := porcupine.VisualizePath(model, info, html); err != nil {
			return r, fmt.Errorf("blockreg: draw the history: %w", err)
		}
	}
	return r, nil
}

// explain describes each illegal block: the end of the longest
// linearization porcupine found and the operations it could not place
// after it, the earliest to return first.
func explain(ops []porcupine.Operation, timeout time.Duration) []string {
	var base int64 = -1
	for _, op := range ops {
		if base < 0 || op.Call < base {
			base = op.Call
		}
	}
	describe := func(op porcupine.Operation) string {
		ms := func(t int64) float64 { return float64(t-base) / 1e6 }
		return fmt.Sprintf("client %d [%.1f ms, %.1f ms] %s", op.ClientId, ms(op.Call), ms(op.Return), model.DescribeOperation(op.Input, op.Output))
	}
	var out []string
	for _, part := range model.Partition(ops) {
		res, info := porcupine.CheckOperationsVerbose(model, part, timeout)
		if res != porcupine.Illegal {
			continue
		}
		var longest []porcupine.Operation
		for _, ls := range info.PartialLinearizationsOperations() {
			for _, l := range ls {
				if len(l) > len(longest) {
					longest = l
				}
			}
		}
		type key struct {
			client int
			call   int64
		}
		placed := map[key]bool{}
		for _, op := range longest {
			placed[key{op.ClientId, op.Call}] = true
		}
		s := fmt.Sprintf("block %d: %d operations, the longest linearization places %d; it ends:", part[0].Input.(input).block, len(part), len(longest))
		for _, op := range longest[max(0, len(longest)-8):] {
			s += "\n  " + describe(op)
		}
		var rest []porcupine.Operation
		for _, op := range part {
			if !placed[key{op.ClientId, op.Call}] {
				rest = append(rest, op)
			}
		}
		slices.SortFunc(rest, func(x, y porcupine.Operation) int { return int(x.Return - y.Return) })
		s += "\nand cannot go on with:"
		for _, op := range rest[:min(len(rest), 6)] {
			s += "\n  " + describe(op)
		}
		out = append(out, s)
	}
	return out
}

// Lost returns the acknowledged writes that the final reads show surely
// lost: the last final read of the write's block found zeroes, data no
// write to that block wrote, or a write that had returned before the
// acknowledged one was called. (A write of unknown outcome may have taken
// effect after any other, so finding it proves nothing.) Blocks without a
// final read are not judged.
func Lost(ops []Op) []Op {
	final := map[int]uint64{}
	for _, op := range ops {
		if op.Final && op.Result == OK {
			final[op.Block] = op.Value
		}
	}
	writes := map[uint64]Op{}
	for _, op := range ops {
		if op.Write {
			writes[op.Value] = op
		}
	}
	var lost []Op
	for _, op := range ops {
		if !op.Write || op.Result != OK {
			continue
		}
		v, judged := final[op.Block]
		if !judged {
			continue
		}
		held, known := writes[v]
		if v == 0 || !known || held.Block != op.Block || held.Result == OK && held.Return < op.Call {
			lost = append(lost, op)
		}
	}
	return lost
}
