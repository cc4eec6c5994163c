/* Chat templates (tokenizer_chat_render): recognised by their exact text, never interpreted.
 * lorasc knows the ChatML family: SmolLM2-Instruct's template (a default system message when
 * the conversation opens without one) and plain ChatML; both render each message as
 * "<|im_start|>ROLE\nCONTENT<|im_end|>\n" and the generation prompt as "<|im_start|>assistant\n",
 * which is what transformers' apply_chat_template gives with them (trim_blocks and lstrip_blocks
 * leave nothing else: the templates have no text outside their expressions). Not here: Jinja. */
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/data/tokenizer_internal.h"

typedef struct ChatTemplate {
    const char *text;           /* the template, byte for byte */
    const char *default_system; /* content of the system message added first, or NULL */
} ChatTemplate;

static const ChatTemplate KNOWN[] = {
    {"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
     "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
     "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
     "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
     "{{ '<|im_start|>assistant\n' }}{% endif %}",
     "You are a helpful AI assistant named SmolLM, trained by Hugging Face"},
    {"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
     "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
     "{% endif %}",
     NULL},
};

static char *put(char *p, const char *s) {
    const size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

static char *put_message(char *p, const char *role, const char *content) {
    p = put(p, "<|im_start|>");
    p = put(p, role);
    p = put(p, "\n");
    p = put(p, content);
    return put(p, "<|im_end|>\n");
}

int tokenizer_chat_render(const Tokenizer *t, const ChatMessage *messages, size_t n,
                          int add_generation_prompt, char **out) {
    *out = NULL;
    if (!t->chat_template)
        return error_set("%s has no chat template (GGUF tokenizer.chat_template, or chat_template "
                         "in the tokenizer_config.json beside a tokenizer.json).", t->source);
    const ChatTemplate *tpl = NULL;
    for (size_t i = 0; i < sizeof KNOWN / sizeof KNOWN[0]; i++)
        if (strcmp(t->chat_template, KNOWN[i].text) == 0) tpl = &KNOWN[i];
    if (!tpl)
        return error_set("The chat template of %s is not one lorasc knows: it renders SmolLM2-Instruct's "
                         "ChatML template and plain ChatML, recognised by their exact text, and does "
                         "not interpret Jinja.", t->source);
    const int add_system = n > 0 && tpl->default_system && strcmp(messages[0].role ? messages[0].role : "",
                                                                 "system") != 0;
    size_t size = 64 + (add_system ? strlen(tpl->default_system) : 0);
    for (size_t i = 0; i < n; i++) {
        if (!messages[i].role || !messages[i].content)
            return error_set("Chat message %zu has no %s.", i + 1, messages[i].role ? "content" : "role");
        size += 32 + strlen(messages[i].role) + strlen(messages[i].content);
    }
    char *s = malloc(size), *p = s;
    if (!s) return error_set("Out of memory rendering a %zu-message chat.", n);
    if (add_system) p = put_message(p, "system", tpl->default_system);
    for (size_t i = 0; i < n; i++) p = put_message(p, messages[i].role, messages[i].content);
    if (add_generation_prompt) p = put(p, "<|im_start|>assistant\n");
    *p = '\0';
    *out = s;
    return LSC_OK;
}
