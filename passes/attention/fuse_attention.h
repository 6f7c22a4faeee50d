// The exact attention passes: fuse-attention (forward) and
// fuse-attention-backward (forward and the backward autodiff wrote). See
// fuse_attention.cc for what each rewrites, recognize.h for the spellings.
#ifndef SUBQUAD_PASSES_ATTENTION_FUSE_ATTENTION_H_
#define SUBQUAD_PASSES_ATTENTION_FUSE_ATTENTION_H_

#include "passes/pattern/rewrite.h"

namespace subquad {

// The rewrite patterns behind the two passes, for pipelines built in code.
pattern::RewritePattern FuseAttentionPattern();
pattern::RewritePattern FuseAttentionBackwardPattern();

}  // namespace subquad

#endif  // SUBQUAD_PASSES_ATTENTION_FUSE_ATTENTION_H_
