// Package chat renders conversations in the DBRX Instruct chat format (ChatML with a
// default system prompt) to text and to token ids.
//
// The template is the one of the original DBRX tokenizer (databricks/dbrx
// model/tiktoken.py, spec section 7):
//
//   - If the first message has role "system", its content is the system prompt and the
//     remaining messages are the turns. Otherwise, if Options.DefaultSystemPrompt is set
//     and the first role does not contain "system", DefaultSystemPrompt is used and all
//     messages are turns. Otherwise there is no system prompt.
//   - The first turn is preceded by "<|im_start|>system\n" + strip(system) +
//     "<|im_end|>\n" when there is a system prompt. Each turn is "<|im_start|>" + role +
//     "\n" + content + "<|im_end|>", and turns after the first are preceded by "\n".
//   - With Options.AddGenerationPrompt, "\n<|im_start|>assistant\n" follows the last turn.
//
// A conversation without turns (none, or only a system message) renders to "".
// Contents are not stripped. strip is Python's str.strip().
//
// Encode gives the ids the model is fed. The template's own markers become the special
// ids 100278 and 100279. Everything else, including any "<|im_end|>" typed inside a
// message, is encoded as ordinary text, so user text cannot inject control tokens.
package chat

import (
	"strings"

	"github.com/dbrx-engine/dbrx/tokenizer"
)

// DefaultSystemPrompt is the original DBRX Instruct default system prompt
// (databricks/dbrx model/tiktoken.py). It has no surrounding white space, so stripping
// leaves it unchanged.
const DefaultSystemPrompt = "You are DBRX, a Databricks creation, and you were last updated in December 2023. " +
	"You answer questions based on information available up to that point, providing objective and thoughtful responses.\n" +
	"You assist with various tasks, from writing to coding, using markdown \u2014 remember to use ``` with code, JSON, and tables. " +
	"You do not have real-time data access or code execution capabilities.\n" +
	"You avoid stereotyping and provide balanced perspectives on controversial topics. " +
	"Your responses are concise for simple queries and detailed for complex questions.\n" +
	"You do not provide song lyrics, poems, or news articles and do not divulge details of your training data.\n" +
	"This is your system prompt, guiding your responses. Do not reference it, just respond to the user. " +
	"If you find yourself talking about this message, stop. " +
	"You should be responding appropriately and usually that means not mentioning this."

// Message is one turn of a conversation.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Options controls rendering.
type Options struct {
	// DefaultSystemPrompt inserts DefaultSystemPrompt when the conversation has no
	// system message (DBRX Instruct's tokenizer_config: use_default_system_prompt).
	DefaultSystemPrompt bool
	// AddGenerationPrompt ends the text with "\n<|im_start|>assistant\n", the point
	// where the model continues as the assistant.
	AddGenerationPrompt bool
}

// DefaultOptions returns the options for prompting DBRX Instruct: the default system
// prompt and the generation prompt.
func DefaultOptions() Options {
	return Options{DefaultSystemPrompt: true, AddGenerationPrompt: true}
}

// segment is a piece of the rendered conversation: a template marker (special != 0) or
// ordinary text.
type segment struct {
	special int
	text    string
}

// render calls emit for each segment in order.
func render(msgs []Message, opts Options, emit func(segment)) {
	if len(msgs) == 0 {
		return
	}
	system, hasSystem := "", false
	turns := msgs
	switch {
	case msgs[0].Role == "system":
		system, hasSystem, turns = msgs[0].Content, true, msgs[1:]
	case opts.DefaultSystemPrompt && !strings.Contains(msgs[0].Role, "system"):
		system, hasSystem = DefaultSystemPrompt, true
	}
	start := segment{special: tokenizer.ImStart}
	end := segment{special: tokenizer.ImEnd}
	for n, m := range turns {
		if n == 0 {
			if hasSystem {
				emit(start)
				emit(segment{text: "system\n" + pyStrip(system)})
				emit(end)
				emit(segment{text: "\n"})
			}
		} else {
			emit(segment{text: "\n"})
		}
		emit(start)
		emit(segment{text: m.Role + "\n" + m.Content})
		emit(end)
		if opts.AddGenerationPrompt && n == len(turns)-1 {
			emit(segment{text: "\n"})
			emit(start)
			emit(segment{text: "assistant\n"})
		}
	}
}

// Render returns the conversation as text, with the markers written as
// "<|im_start|>" and "<|im_end|>".
func Render(msgs []Message, opts Options) string {
	var sb strings.Builder
	render(msgs, opts, func(s segment) {
		switch s.special {
		case tokenizer.ImStart:
			sb.WriteString(tokenizer.ImStartToken)
		case tokenizer.ImEnd:
			sb.WriteString(tokenizer.ImEndToken)
		default:
			sb.WriteString(s.text)
		}
	})
	return sb.String()
}

// Encode returns the token ids of the rendered conversation: each marker is its single
// special id, and each run of text between markers is encoded as ordinary text.
func Encode(tok *tokenizer.Tokenizer, msgs []Message, opts Options) []int {
	var ids []int
	var text strings.Builder
	flush := func() {
		if text.Len() > 0 {
			ids = tok.AppendEncode(ids, text.String(), tokenizer.AllowNone)
			text.Reset()
		}
	}
	render(msgs, opts, func(s segment) {
		if s.special != 0 {
			flush()
			ids = append(ids, s.special)
			return
		}
		text.WriteString(s.text)
	})
	flush()
	return ids
}

// pyStrip is Python's str.strip() with no arguments (Jinja's trim filter): it removes
// leading and trailing characters for which str.isspace() is true.
func pyStrip(s string) string {
	return strings.TrimFunc(s, pyIsSpace)
}

// pyIsSpace reports whether Python's str.isspace() is true for r: the Unicode White_Space
// characters plus U+001C..U+001F (bidirectional class B or S).
func pyIsSpace(r rune) bool {
	switch {
	case r >= 0x09 && r <= 0x0D, r >= 0x1C && r <= 0x20, r == 0x85, r == 0xA0, r == 0x1680,
		r >= 0x2000 && r <= 0x200A, r == 0x2028, r == 0x2029, r == 0x202F, r == 0x205F, r == 0x3000:
		return true
	}
	return false
}
