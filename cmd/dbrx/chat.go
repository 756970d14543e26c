package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/dbrx-engine/dbrx/chat"
	"github.com/dbrx-engine/dbrx/engine"
	"github.com/dbrx-engine/dbrx/internal/parallel"
	"github.com/dbrx-engine/dbrx/model/dbrx"
	"github.com/dbrx-engine/dbrx/tokenizer"
)

func init() {
	register(command{name: "chat", summary: "interactive multi-turn chat with the DBRX chat template", run: runChat})
}

const chatHelp = "Type a message and press Enter. Commands: /reset (forget the conversation), /exit (quit)."

func runChat(ctx context.Context, e env, args []string) error {
	fs := newFlags("chat", e)
	modelDir := fs.String("model", "", "model: HF checkpoint directory or .gguf file (default: $DBRX_MODEL, else the shipped dbrx-tiny)")
	system := fs.String("system", "", "system prompt (default: DBRX's default system prompt)")
	threads := fs.Int("threads", 0, "worker threads (0 = all cores)")
	sf := addSamplingFlags(fs)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q (chat reads messages from standard input)", errUsage, pos[0])
	}
	if *modelDir, _, err = resolveModel(*modelDir); err != nil {
		return err
	}
	scfg, err := sf.config()
	if err != nil {
		return err
	}
	m, err := dbrx.Load(*modelDir)
	if err != nil {
		return err
	}
	defer m.Close()
	pool := parallel.New(*threads)
	defer pool.Close()
	tok := tokenizer.DBRX()
	// One sequence at a time; the prefix cache keeps the conversation's KV between turns.
	eng, err := engine.New(m, tok, pool, engine.Config{MaxSeqs: 1, MaxQueue: 1})
	if err != nil {
		return err
	}
	defer eng.Close()

	var history []chat.Message
	reset := func() {
		history = history[:0]
		if *system != "" {
			history = append(history, chat.Message{Role: "system", Content: *system})
		}
	}
	reset()
	in := bufio.NewScanner(e.stdin)
	in.Buffer(make([]byte, 64<<10), 16<<20)
	out := bufio.NewWriter(e.stdout)
	fmt.Fprintln(e.stderr, chatHelp)
	for turn := 0; ; {
		fmt.Fprint(e.stderr, "> ")
		if !in.Scan() {
			fmt.Fprintln(e.stderr)
			return in.Err()
		}
		line := strings.TrimSpace(in.Text())
		switch line {
		case "":
			continue
		case "/exit", "/quit":
			return nil
		case "/reset":
			reset()
			fmt.Fprintln(e.stderr, "(conversation cleared)")
			continue
		}
		if strings.HasPrefix(line, "/") {
			fmt.Fprintf(e.stderr, "unknown command %s. %s\n", line, chatHelp)
			continue
		}
		history = append(history, chat.Message{Role: "user", Content: line})
		prompt, dropped := fitConversation(tok, history, *system != "", eng.MaxContext(), *sf.maxNew)
		if prompt == nil {
			history = history[:len(history)-1]
			fmt.Fprintf(e.stderr, "message too long for the context (%d tokens)\n", eng.MaxContext())
			continue
		}
		if dropped > 0 {
			first := firstTurn(*system != "")
			history = append(history[:first], history[first+dropped:]...)
			fmt.Fprintf(e.stderr, "(dropped %d old messages to fit the context)\n", dropped)
		}
		sc := scfg
		sc.Seed += uint64(turn)
		turn++
		budget := min(*sf.maxNew, eng.MaxContext()-len(prompt))
		var reply strings.Builder
		for t, err := range eng.Generate(ctx, engine.Request{Prompt: prompt, MaxNewTokens: budget, Sampling: sc}) {
			if err != nil {
				out.Flush()
				if errors.Is(err, context.Canceled) {
					return nil
				}
				return err
			}
			reply.WriteString(t.Text)
			io.WriteString(out, t.Text)
			out.Flush()
		}
		fmt.Fprintln(out)
		out.Flush()
		history = append(history, chat.Message{Role: "assistant", Content: reply.String()})
	}
}

// firstTurn is the index of the first droppable message.
func firstTurn(hasSystem bool) int {
	if hasSystem {
		return 1
	}
	return 0
}

// fitConversation encodes history with the generation prompt, dropping the oldest
// user/assistant messages (never the system message or the last user message) until
// the prompt leaves room for maxNew tokens (or at least one). It returns the ids and
// the number of messages dropped, or nil if even the last message does not fit.
func fitConversation(tok *tokenizer.Tokenizer, history []chat.Message, hasSystem bool, context, maxNew int) ([]int, int) {
	first := firstTurn(hasSystem)
	for dropped := 0; first+dropped < len(history); dropped++ {
		msgs := append(append([]chat.Message(nil), history[:first]...), history[first+dropped:]...)
		ids := chat.Encode(tok, msgs, chat.DefaultOptions())
		if len(ids)+min(maxNew, 1) <= context && (len(ids)+maxNew <= context || first+dropped == len(history)-1) {
			return ids, dropped
		}
	}
	return nil, 0
}
