# mk/model.mk - the Spin model of the free-index stack (tests/model/).
#
#   make model       verify tests/model/stack.pml: the tagged stack must be
#                    clean (exhaustive, 3 processes x 3 blocks), the tag-less
#                    variants must give counterexamples; prints states
#   make test-model  the same, as a `make test` step
#
# pan, its logs and trails go to $(BUILD)/model/, never into tests/model/.
MODEL_OUT := $(BUILD)/model

.PHONY: model
TEST_STEPS += test-model

model:
	@tools/ensure-deps model
	@tests/model/run.sh $(MODEL_OUT)

test-model: model
