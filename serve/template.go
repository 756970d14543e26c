package serve

import (
	"github.com/dbrx-engine/dbrx/chat"
	"github.com/dbrx-engine/dbrx/tokenizer"
)

// Message is one validated chat message ("developer" is mapped to "system").
type Message = chat.Message

// TemplateFunc renders a conversation, with the assistant generation prompt, to
// prompt ids.
type TemplateFunc func(msgs []Message) ([]int, error)

// DBRXTemplate returns the DBRX Instruct chat template over tok (package chat: the
// default system prompt unless the first message is a system message, ChatML
// markers as special ids, message text encoded as ordinary text so typed special
// strings never become control tokens, and the assistant generation prompt).
func DBRXTemplate(tok *tokenizer.Tokenizer) TemplateFunc {
	return func(msgs []Message) ([]int, error) {
		return chat.Encode(tok, msgs, chat.DefaultOptions()), nil
	}
}
