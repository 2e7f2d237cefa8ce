"""Recommendation without a query: "for you" lists from a user's feedback (content, collaborative
filtering, popularity and a hybrid of them). The core composes these with the collection's
vectors and the reranker (`crossmodal.core.recommending`); see docs/recommendation.md."""
